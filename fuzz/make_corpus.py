"""Write the seed corpus (fuzz/corpus/<target>/): a few small valid inputs per target, encoded with
PyAV (FFmpeg) and libopus as the tests encode them, and the Wyoming event streams a client sends.

Run from the repository root: `uv run --frozen python -m fuzz.make_corpus`. It rewrites only the
files it makes (`seed-*`); inputs saved from crashes (`defect-*`) stay.
"""

import json
import struct
from pathlib import Path

import numpy as np

from tests.audio import encode, opus_packets, tone_and_noise, wav_bytes
from tests.unit.transcoder_containers.media import encode as encode_with_options

CORPUS = Path(__file__).resolve().parent / "corpus"


def _id3(body: bytes) -> bytes:
    size = len(body)
    syncsafe = bytes((size >> shift) & 0x7F for shift in (21, 14, 7, 0))
    return b"ID3\x04\x00\x00" + syncsafe + body


def _without_padding(flac: bytes) -> bytes:
    """A FLAC stream without its PADDING block (FFmpeg writes 8 KiB of it)."""
    blocks, at, last = [], 4, False
    while not last:
        kind, size = flac[at] & 0x7F, int.from_bytes(flac[at + 1 : at + 4], "big")
        last = bool(flac[at] & 0x80)
        if kind != 1:
            blocks.append((kind, flac[at + 4 : at + 4 + size]))
        at += 4 + size
    head = b"fLaC"
    for index, (kind, body) in enumerate(blocks):
        head += (
            bytes([kind | (0x80 if index == len(blocks) - 1 else 0)]) + len(body).to_bytes(3, "big") + body
        )
    return head + flac[at:]


def _chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def _wav(audio: bytes, *, tag: int, bits: int, channels: int, rate: int, size: int | None = None) -> bytes:
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
    fmt += struct.pack("<HHIH", 22, bits, 0, tag) + bytes(14)
    data = b"data" + struct.pack("<I", len(audio) if size is None else size) + audio
    body = b"WAVE" + _chunk(b"fmt ", fmt) + _chunk(b"LIST", b"INFOISFT\x04\x00\x00\x00vox\x00") + data
    if size is None:
        body += _chunk(b"id3 ", _id3(b""))
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _event(kind: str, data: dict[str, object], payload: bytes = b"", *, inline: bool = True) -> bytes:
    header: dict[str, object] = {"type": kind}
    extra = b""
    if inline:
        header["data"] = data
    else:
        extra = json.dumps(data).encode()
        header["data_length"] = len(extra)
    if payload:
        header["payload_length"] = len(payload)
    return json.dumps(header).encode() + b"\n" + extra + payload


def seeds() -> dict[str, dict[str, bytes]]:
    mono48, stereo44 = tone_and_noise(0.1, 48000, 1), tone_and_noise(0.05, 44100, 2)
    mono16 = tone_and_noise(0.1, 16000, 1)
    vorbis = {"strict": "experimental"}
    pcm = (mono16[:320].astype(np.int16)).tobytes()
    packet = opus_packets(mono16, 16000)[0]
    fmt = {"rate": 16000, "width": 2, "channels": 1}
    return {
        "ogg": {
            "seed-opus-mono.ogg": encode(mono48, 48000, container="ogg", codec="libopus", bit_rate=24_000),
            "seed-vorbis-stereo.ogg": encode_with_options("ogg", "vorbis", stereo44, 44100, options=vorbis),
        },
        "webm": {
            "seed-opus-live.webm": encode_with_options(
                "webm", "libopus", mono48, 48000, container_options={"live": "1"}
            ),
            "seed-vorbis.webm": encode_with_options("webm", "vorbis", stereo44, 44100, options=vorbis),
        },
        "flac": {
            "seed-16bit.flac": _without_padding(
                encode_with_options("flac", "flac", mono16[:800] // 64, 16000)
            ),
        },
        "wav": {
            "seed-pcm16.wav": wav_bytes(mono16[:400], 16000),
            "seed-mulaw-extensible.wav": _wav(bytes(range(256)), tag=7, bits=8, channels=1, rate=8000),
            "seed-float32-stereo-unknown-size.wav": _wav(
                np.linspace(-1, 1, 128, dtype="<f4").tobytes(), tag=3, bits=32, channels=2, rate=16000, size=0
            ),
        },
        "mp3": {
            "seed-lame.mp3": encode(mono16, 16000, container="mp3", codec="libmp3lame", bit_rate=32_000),
            "seed-id3.mp3": _id3(b"TIT2\x00\x00\x00\x04\x00\x00\x03vox")
            + encode(mono16, 16000, container="mp3", codec="libmp3lame", bit_rate=32_000)[:600],
        },
        "aac": {
            "seed-adts.aac": encode(mono16, 16000, container="adts", codec="aac", bit_rate=32_000),
        },
        "wyoming": {
            "seed-pcm-session.txt": _event("audio-start", fmt)
            + _event("audio-chunk", fmt, pcm)
            + _event("audio-chunk", fmt, pcm, inline=False)
            + _event("ping", {"text": "hi"})
            + _event("audio-stop", {}),
            "seed-opus-session.txt": _event("audio-start", {**fmt, "format": "opus", "user_id": "u"})
            + _event("audio-chunk", {"format": "opus"}, packet)
            + _event("audio-stop", {}, inline=False),
        },
    }


def main() -> None:
    for target, files in seeds().items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, data in files.items():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
