"""Per-session incremental decoders: bytes of one codec in, blocks of samples out.

One decoder per session, fed each chunk as it arrives; state (partial frames, codec history)
carries between chunks, so nothing is ever decoded twice. Every decoder error is a `DecodeError`.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np
import numpy.typing as npt

from voxbus.transcoder.containers import ContainerError, FlacStream, OggDemuxer, WebmDemuxer
from voxbus.transcoder.id3 import Id3Skipper
from voxbus.transcoder.opus import LibopusDecoder, OpusDecodeError
from voxbus.transcoder.samples import ALAW, MULAW, FrameAligner, Samples, finite, g711_decode
from voxbus.transcoder.wav import MAX_CHANNELS, WavDataReader, WavError, WavFormat, WavHeaderParser

OPUS_RATES: Final = (8000, 12000, 16000, 24000, 48000)
_OPUS_MAX_FRAME_SECONDS: Final = 0.12
# A compressed stream that yields no audio at all after this many bytes is not that codec.
_NOTHING_DECODED_LIMIT: Final = 256 * 1024


class DecodeError(ValueError):
    """Input that cannot be decoded as the session's codec; the message is for the client."""


@dataclass(frozen=True, slots=True)
class Block:
    """Decoded audio: `samples` is (frames, channels) at `rate`."""

    samples: Samples
    rate: int


class Decoder(ABC):
    @abstractmethod
    def decode(self, data: bytes) -> list[Block]: ...

    def flush(self) -> list[Block]:
        """End of stream: whatever the decoder still holds."""
        return []


class RawPcmDecoder(Decoder):
    """pcm_s16le: whole frames out, a partial frame carried to the next chunk."""

    def __init__(self, rate: int, channels: int) -> None:
        self._rate, self._channels = rate, channels
        self._aligner = FrameAligner(2 * channels)

    def decode(self, data: bytes) -> list[Block]:
        whole = self._aligner.push(data)
        if not whole:
            return []
        return [Block(np.frombuffer(whole, dtype=np.int16).reshape(-1, self._channels), self._rate)]

    def passthrough(self, data: bytes, rate: int, channels: int) -> bytes | None:
        """Whole frames as they are, when they already are the target format."""
        if (rate, channels) != (self._rate, self._channels):
            return None
        return self._aligner.push(data)

    @property
    def at_frame_boundary(self) -> bool:
        return self._aligner.pending == 0


class G711Decoder(Decoder):
    """mulaw / alaw: one byte per sample."""

    def __init__(self, table: npt.NDArray[np.int16], rate: int, channels: int) -> None:
        self._table, self._rate, self._channels = table, rate, channels
        self._aligner = FrameAligner(channels)

    def decode(self, data: bytes) -> list[Block]:
        whole = self._aligner.push(data)
        if not whole:
            return []
        return [Block(g711_decode(whole, self._table).reshape(-1, self._channels), self._rate)]

    @property
    def at_frame_boundary(self) -> bool:
        return self._aligner.pending == 0


class WavDecoder(Decoder):
    """A RIFF/WAVE stream: header (split anywhere), then samples of any WAV sample format."""

    def __init__(self) -> None:
        self._header: WavHeaderParser | None = WavHeaderParser()
        self._format: WavFormat | None = None
        self._aligner: FrameAligner | None = None
        self._data: WavDataReader | None = None

    @property
    def format(self) -> WavFormat | None:
        return self._format

    @classmethod
    def after_header(cls, wav_format: WavFormat) -> "WavDecoder":
        """A decoder for a stream whose header was already read (a session taken over mid-stream)."""
        decoder = cls()
        decoder._start(wav_format)
        return decoder

    def decode(self, data: bytes) -> list[Block]:
        if self._header is not None:
            try:
                parsed = self._header.feed(data)
            except WavError as exc:
                raise DecodeError(str(exc)) from exc
            if parsed is None:
                return []
            header, data = parsed
            self._start(header)
        return self._blocks(self._audio(data))

    def flush(self) -> list[Block]:
        if self._header is not None:
            missing = self._header.missing()
            if missing is not None:
                raise DecodeError(missing)
            return []
        return self._blocks(self._data.end() if self._data is not None else b"")

    @property
    def at_frame_boundary(self) -> bool:
        aligner, data = self._aligner, self._data
        return aligner is not None and aligner.pending == 0 and data is not None and data.settled

    def passthrough(self, data: bytes, rate: int, channels: int) -> bytes | None:
        """After the header, 16-bit PCM data as it is, when it already is the target format."""
        fmt, aligner = self._format, self._aligner
        if fmt is None or aligner is None or (fmt.encoding, fmt.bits) != ("int", 16):
            return None
        if (fmt.sample_rate, fmt.channels) != (rate, channels):
            return None
        return aligner.push(self._audio(data))

    def _audio(self, data: bytes) -> bytes:
        if self._data is None:
            return b""
        try:
            return self._data.audio(data)
        except WavError as exc:
            raise DecodeError(str(exc)) from exc

    def _blocks(self, audio: bytes) -> list[Block]:
        aligner, wav_format = self._aligner, self._format
        if aligner is None or wav_format is None:
            return []
        whole = aligner.push(audio)
        if not whole:
            return []
        return [Block(_wav_samples(whole, wav_format), wav_format.sample_rate)]

    def _start(self, wav_format: WavFormat) -> None:
        self._header = None
        self._format = wav_format
        self._aligner = FrameAligner(wav_format.block_align)
        self._data = WavDataReader(wav_format.data_bytes)


def _int24(data: bytes) -> npt.NDArray[np.int32]:
    raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    return (raw[:, 0] << 8) | (raw[:, 1] << 16) | (raw[:, 2] << 24)  # 24-bit held in the top bits


def _float64(data: bytes) -> Samples:
    return finite(np.frombuffer(data, dtype="<f8")).astype(np.float32)  # in range: a safe cast


_WAV_READERS: Final[dict[tuple[str, int], Callable[[bytes], Samples]]] = {
    ("int", 8): lambda data: ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(
        np.int16
    ),
    ("int", 16): lambda data: np.frombuffer(data, dtype="<i2"),
    ("int", 24): _int24,
    ("int", 32): lambda data: np.frombuffer(data, dtype="<i4"),
    ("float", 32): lambda data: finite(np.frombuffer(data, dtype="<f4")),
    ("float", 64): _float64,
    ("mulaw", 8): lambda data: g711_decode(data, MULAW),
    ("alaw", 8): lambda data: g711_decode(data, ALAW),
}


def _wav_samples(data: bytes, fmt: WavFormat) -> Samples:
    return _WAV_READERS[(fmt.encoding, fmt.bits)](data).reshape(-1, fmt.channels)


class OpusPacketDecoder(Decoder):
    """Raw Opus: each chunk is one packet (Omi-style); libopus decodes at a rate it supports."""

    def __init__(self, rate: int, channels: int, *, pre_skip: int = 0) -> None:
        self._rate = rate if rate in OPUS_RATES else 48000
        self._skip = pre_skip * self._rate // 48000
        try:
            self._decoder = LibopusDecoder(self._rate, channels, int(self._rate * _OPUS_MAX_FRAME_SECONDS))
        except OpusDecodeError as exc:
            raise DecodeError(f"cannot make an Opus decoder: {exc}") from exc

    def decode(self, data: bytes) -> list[Block]:
        if not data:
            return []
        try:
            samples = self._decoder.decode(bytes(data))
        except OpusDecodeError as exc:
            raise DecodeError(f"invalid Opus packet ({len(data)} bytes): {exc}") from exc
        if self._skip:
            dropped = min(self._skip, len(samples))
            samples, self._skip = samples[dropped:], self._skip - dropped
        return [Block(samples, self._rate)] if len(samples) else []


class AvDecoder(Decoder):
    """An FFmpeg decoder (PyAV) fed either a byte stream through its parser, or whole packets."""

    def __init__(self, codec: str, *, extradata: bytes = b"", parse: bool) -> None:
        try:
            self._context: Any = av.CodecContext.create(codec, "r")  # an audio decoder's context
        except av.error.FFmpegError as exc:
            raise DecodeError(f"no {codec} decoder: {exc}") from exc
        if extradata:
            self._context.extradata = extradata
        # Opened now, not at the first packet as PyAV would: by then FFmpeg's parser may have set
        # the context from bytes it took for a header, and junk there can make the open fail, or
        # not, depending on how the stream was cut.
        try:
            self._context.open()
        except av.error.FFmpegError as exc:
            raise DecodeError(f"cannot start a {codec} decoder with this stream's headers: {exc}") from exc
        self._codec, self._parse = codec, parse
        self._bytes_in = 0
        self._frames_out = 0

    def decode(self, data: bytes) -> list[Block]:
        self._bytes_in += len(data)
        blocks = self._run(data)
        if not self._frames_out and self._bytes_in > _NOTHING_DECODED_LIMIT:
            raise DecodeError(f"no decodable {self._codec} audio in the first {self._bytes_in} bytes")
        return blocks

    def flush(self) -> list[Block]:
        blocks = self._run(None)
        if self._bytes_in and not self._frames_out:
            raise DecodeError(f"no decodable {self._codec} audio in {self._bytes_in} bytes")
        return blocks

    def _run(self, data: bytes | None) -> list[Block]:
        if data is not None and not data:
            return []  # PyAV reads an empty input as "flush"; mid-stream that must never happen
        try:
            packets = self._packets(data)
        except av.error.FFmpegError as exc:
            raise DecodeError(f"invalid {self._codec} data: {exc}") from exc
        blocks = [block for packet in packets for block in self._decode_packet(packet)]
        self._frames_out += sum(len(block.samples) for block in blocks)
        return blocks

    def _decode_packet(self, packet: Any) -> list[Block]:
        try:
            frames = self._context.decode(packet)
        except av.error.InvalidDataError:
            if not self._parse:
                raise DecodeError(f"invalid {self._codec} packet") from None
            # A parsed stream (mp3, ADTS) may carry junk between frames (tags, a cut frame): a
            # bad frame is skipped, as players do; a stream with no good frame fails above.
            return []
        except av.error.FFmpegError as exc:
            raise DecodeError(f"invalid {self._codec} data: {exc}") from exc
        # The rate the decoder read in the frame's own header, which it leaves in the context. A
        # frame is stamped with the context's rate as it was when decoding began, and a parser
        # (mp3) sets that from headers it finds as it reads ahead: at a rate change the frame
        # before it, and in damaged bytes whatever looked like a header, would take a wrong rate.
        return [_frame_block(frame, self._context.sample_rate) for frame in frames]

    def _packets(self, data: bytes | None) -> list[Any]:
        if not self._parse:
            return [av.Packet(data) if data is not None else None]
        if data is not None:
            return list(self._context.parse(data))
        # At the end, each parse(None) releases at most one held-back packet (FFmpeg's FLAC parser
        # holds about ten): call it until it has nothing twice in a row, then flush the decoder.
        packets: list[Any] = []
        empty_calls = 0
        while empty_calls < 2:
            released = list(self._context.parse(None))
            empty_calls = 0 if released else empty_calls + 1
            packets.extend(released)
        return [*packets, None]


def _frame_block(frame: av.AudioFrame, rate: int) -> Block:
    channels = frame.layout.nb_channels
    if channels > MAX_CHANNELS:
        # PyAV reads the planes of a planar frame past the 8 an AVFrame holds inline: with more
        # channels (an AAC stream's PCE may declare 31) to_ndarray() crashes the process
        raise DecodeError(f"the stream decodes to {channels} channels; voxbus takes 1-{MAX_CHANNELS}")
    array = frame.to_ndarray()
    samples = array.T if frame.format.is_planar else array.reshape(-1, channels)
    if samples.dtype == np.float64:
        samples = samples.astype(np.float32)
    if samples.dtype.kind == "f":
        samples = finite(samples)
    elif samples.dtype == np.uint8:
        samples = (samples.astype(np.int16) - 128) << 8
    return Block(np.ascontiguousarray(samples), rate or frame.sample_rate)


class Mp3Decoder(Decoder):
    """mp3: a leading ID3v2 tag is skipped, then FFmpeg's parser and decoder take the frames."""

    def __init__(self) -> None:
        self._tag = Id3Skipper()
        self._decoder = AvDecoder("mp3", parse=True)

    def decode(self, data: bytes) -> list[Block]:
        return self._decoder.decode(self._tag.feed(data))

    def flush(self) -> list[Block]:
        return self._decoder.flush()


class FlacDecoder(Decoder):
    """Native FLAC: our reader takes the metadata (STREAMINFO → extradata), FFmpeg the frames."""

    def __init__(self) -> None:
        self._stream = FlacStream()
        self._decoder: AvDecoder | None = None

    def decode(self, data: bytes) -> list[Block]:
        try:
            frames = self._stream.feed(data)
        except ContainerError as exc:
            raise DecodeError(str(exc)) from exc
        if self._decoder is None:
            if self._stream.info is None:
                return []
            self._decoder = AvDecoder("flac", extradata=self._stream.info.extradata, parse=True)
        return self._decoder.decode(frames) if frames else []

    def flush(self) -> list[Block]:
        if self._decoder is None:
            raise DecodeError("FLAC stream ended before its STREAMINFO")
        return self._decoder.flush()


class ContainerDecoder(Decoder):
    """Ogg or WebM: our demuxer yields packets; Opus goes to libopus, Vorbis to FFmpeg."""

    def __init__(self, demuxer: OggDemuxer | WebmDemuxer, name: str) -> None:
        self._demuxer = demuxer
        self._name = name
        self._packets: Decoder | None = None

    def decode(self, data: bytes) -> list[Block]:
        try:
            packets = self._demuxer.feed(data)
        except ContainerError as exc:
            raise DecodeError(str(exc)) from exc
        return self._decode_packets(packets)

    def flush(self) -> list[Block]:
        blocks = self._decode_packets(self._demuxer.end())
        if self._packets is None:
            raise DecodeError(f"{self._name} stream ended before its codec headers")
        return blocks + self._packets.flush()

    def _decode_packets(self, packets: list[bytes]) -> list[Block]:
        if not packets:
            return []
        if self._packets is None:
            info = self._demuxer.info
            if info is None:
                raise DecodeError(f"{self._name} audio before the codec headers")
            if info.codec == "opus":
                self._packets = OpusPacketDecoder(48000, info.channels, pre_skip=info.pre_skip)
            else:
                self._packets = AvDecoder(info.codec, extradata=info.extradata, parse=False)
        return [block for packet in packets for block in self._packets.decode(packet)]


_FACTORIES: Final[dict[str, Callable[[int, int], Decoder]]] = {
    "pcm_s16le": RawPcmDecoder,
    "mulaw": lambda rate, channels: G711Decoder(MULAW, rate, channels),
    "alaw": lambda rate, channels: G711Decoder(ALAW, rate, channels),
    "wav": lambda rate, channels: WavDecoder(),
    "opus": OpusPacketDecoder,
    "mp3": lambda rate, channels: Mp3Decoder(),
    "aac": lambda rate, channels: AvDecoder("aac", parse=True),
    "flac": lambda rate, channels: FlacDecoder(),
    "ogg": lambda rate, channels: ContainerDecoder(OggDemuxer(), "Ogg"),
    "webm": lambda rate, channels: ContainerDecoder(WebmDemuxer(), "WebM"),
}


def make_decoder(codec: str, rate: int, channels: int) -> Decoder:
    """The decoder for a session's declared codec; headerless codecs take the declared rate and channels."""
    factory = _FACTORIES.get(codec)
    if factory is None:
        raise DecodeError(f"unsupported codec {codec!r}")
    return factory(rate, channels)
