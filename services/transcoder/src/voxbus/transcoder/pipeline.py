"""One session's conversion: decoder → channel mix → soxr streaming resampler → PCM s16le bytes.

Downmixing happens before resampling and upmixing after, so the resampler works on as few
channels as possible. Audio already in the target format passes through untouched.

Bounded per input chunk, whatever it declares (README "Guarantees and limits"):
- input is fed to the decoder in slices, and what a slice decodes to is converted in pieces of at
  most `PIECE_FRAMES` output frames, so no single resampler call or output piece is large;
- a compressed codec (every codec but PCM, G.711 and WAV, whose output size follows from the
  input size and the declared format) may decode to at most `COMPRESSED_MS_PER_BYTE` ms of audio
  per byte received, over the session, plus `COMPRESSED_ALLOWANCE_SECONDS`: more is refused as a
  `DecodeError` before it is converted. Real streams, even of digital silence, stay far below
  (the densest seen: AAC silence at 8 kHz, 11 ms per byte); a raw Opus packet of 2 bytes that
  says "120 ms" (60 ms per byte) is the case this stops.
"""

from collections.abc import Iterator
from typing import Final

import numpy as np
import soxr

from voxbus.transcoder.decoders import (
    Block,
    DecodeError,
    Decoder,
    G711Decoder,
    OpusPacketDecoder,
    RawPcmDecoder,
    WavDecoder,
    make_decoder,
)
from voxbus.transcoder.samples import Samples, mix_channels, to_int16

PIECE_FRAMES: Final = 16_384  # output frames per piece: 64 KiB of 16-bit stereo
COMPRESSED_MS_PER_BYTE: Final = 20.0
COMPRESSED_ALLOWANCE_SECONDS: Final = 2.0
_SLICE_BYTES: Final = 64 * 1024  # PCM-like input per decoder call (at most 48x that comes out)
# Compressed input per decoder call: its output is checked against the budget before more is
# decoded, so what one call may hold stays small even for frames that expand thousands of times.
_COMPRESSED_SLICE_BYTES: Final = 1024
_FIXED_RATIO: Final = (RawPcmDecoder, G711Decoder, WavDecoder)


class SessionPipeline:
    """Feed a session's chunks in order with `push` (or `pieces`); `finish` at the end returns the tail."""

    def __init__(self, decoder: Decoder, *, rate: int, channels: int) -> None:
        self.decoder = decoder
        self._rate, self._channels = rate, channels
        self._resampler: soxr.ResampleStream | None = None
        self._resampler_key: tuple[int, int, str] | None = None
        self._budgeted = not isinstance(decoder, _FIXED_RATIO)
        # a raw Opus chunk is one packet: it must reach the decoder whole
        self._slice = 0 if isinstance(decoder, OpusPacketDecoder) else _SLICE_BYTES
        if self._budgeted and self._slice:
            self._slice = _COMPRESSED_SLICE_BYTES
        self._bytes_in = 0
        self._seconds_out = 0.0

    @classmethod
    def for_codec(cls, codec: str, *, rate: int, channels: int) -> "SessionPipeline":
        return cls(make_decoder(codec, rate, channels), rate=rate, channels=channels)

    @property
    def stateless_here(self) -> bool:
        """True when a fresh pipeline could take over at this point and produce the same output:
        no partial frame is held and no resampler carries history (PCM-like codecs only)."""
        boundary = getattr(self.decoder, "at_frame_boundary", False)
        return bool(boundary) and self._resampler is None

    def push(self, data: bytes) -> bytes:
        return b"".join(self.pieces(data))

    def pieces(self, data: bytes) -> Iterator[bytes]:
        """The PCM of one chunk, in pieces of at most about `PIECE_FRAMES` frames each."""
        passthrough = getattr(self.decoder, "passthrough", None)
        if passthrough is not None and self._resampler is None:
            pcm: bytes | None = passthrough(data, self._rate, self._channels)
            if pcm is not None:
                yield pcm  # already s16le at the target rate and channels: bytes untouched
                return
        view = memoryview(data)
        step = self._slice or len(view) or 1
        for start in range(0, len(view), step):
            part = bytes(view[start : start + step])
            self._bytes_in += len(part)
            yield from self._convert(self.decoder.decode(part))

    def finish(self) -> bytes:
        return b"".join(self.finish_pieces())

    def finish_pieces(self) -> Iterator[bytes]:
        yield from self._convert(self.decoder.flush())
        if self._resampler is None or self._resampler_key is None:
            return
        _, channels, dtype = self._resampler_key
        rest = self._resampler.resample_chunk(np.zeros((0, channels), dtype=dtype), last=True)
        self._resampler = None
        yield self._finish_block(rest)

    def _convert(self, blocks: list[Block]) -> Iterator[bytes]:
        for block in blocks:
            self._account(block)
            yield from self._convert_block(block)

    def _account(self, block: Block) -> None:
        if not self._budgeted:
            return
        self._seconds_out += len(block.samples) / block.rate
        allowed = COMPRESSED_ALLOWANCE_SECONDS + self._bytes_in * COMPRESSED_MS_PER_BYTE / 1000
        if self._seconds_out > allowed:
            raise DecodeError(
                f"compressed audio decodes to more than {COMPRESSED_MS_PER_BYTE:g} ms per byte received "
                f"({self._seconds_out:.2f} s from {self._bytes_in} bytes); refused"
            )

    def _convert_block(self, block: Block) -> Iterator[bytes]:
        samples = block.samples
        if samples.shape[1] > self._channels:
            samples = mix_channels(samples, self._channels)
        # input frames per piece, so that each piece's output is about PIECE_FRAMES frames
        step = max(1, PIECE_FRAMES * block.rate // self._rate)
        for start in range(0, len(samples), step):
            part = samples[start : start + step]
            if block.rate != self._rate:
                part = self._resample(part, block.rate)
            if len(part):
                yield self._finish_block(part)

    def _finish_block(self, samples: Samples) -> bytes:
        pcm = to_int16(samples)
        if pcm.shape[1] < self._channels:
            pcm = mix_channels(pcm, self._channels)
        return pcm.tobytes()

    def _resample(self, samples: Samples, rate: int) -> Samples:
        # Always in float32: soxr's integer output is dithered with a per-instance random seed,
        # which would make a replay differ from the first run. Rounding to int16 is ours.
        if samples.dtype.kind != "f":
            scale = 32768.0 if samples.dtype == np.int16 else 2147483648.0
            samples = (samples / scale).astype(np.float32)
        key = (rate, samples.shape[1], "float32")
        if self._resampler is None or key != self._resampler_key:
            # a format change mid-stream is rare (a new mp3 frame rate): start a new filter
            self._resampler = soxr.ResampleStream(rate, self._rate, samples.shape[1], dtype="float32")
            self._resampler_key = key
        resampled: Samples = self._resampler.resample_chunk(samples, last=False)
        return resampled
