"""A Matroska TrackEntry as its leaf elements arrive, and the StreamInfo of an audio track."""

from dataclasses import dataclass

from . import matroska_ids as ids
from .ebml import read_float, read_string, read_uint
from .errors import ContainerError
from .info import OPUS_RATE, StreamInfo
from .xiph import VORBIS_HEADERS, parse_opus_head, parse_vorbis_id, xiph_unlace

LEAVES = frozenset(
    {ids.TRACK_NUMBER, ids.TRACK_TYPE, ids.CODEC_ID, ids.CODEC_PRIVATE, ids.CODEC_DELAY}
    | {ids.SAMPLING_FREQUENCY, ids.CHANNELS, ids.BIT_DEPTH}
)
"""The elements of a TrackEntry (and of its Audio master) that `TrackEntry.set` reads."""
NS_PER_SECOND = 1_000_000_000
MAX_RATE = 384_000
"""The highest SamplingFrequency taken (as for WAV): CodecDelay is converted to samples at that rate."""


@dataclass(slots=True)
class TrackEntry:
    """A TrackEntry being read; fields keep Matroska's defaults until their element arrives."""

    offset: int
    number: int = 0
    type: int = 0
    codec_id: str = ""
    codec_private: bytes = b""
    codec_delay_ns: int = 0
    sampling_frequency: float = 8000.0
    channels: int = 1
    bit_depth: int = 0

    def set(self, element_id: int, payload: bytes, at: int) -> None:
        """Take one of the `LEAVES` elements; `at` is its stream offset, for messages."""
        if element_id == ids.TRACK_NUMBER:
            self.number = read_uint(payload, at)
        elif element_id == ids.TRACK_TYPE:
            self.type = read_uint(payload, at)
        elif element_id == ids.CODEC_ID:
            self.codec_id = read_string(payload)
        elif element_id == ids.CODEC_PRIVATE:
            self.codec_private = payload
        elif element_id == ids.CODEC_DELAY:
            self.codec_delay_ns = read_uint(payload, at)
        elif element_id == ids.SAMPLING_FREQUENCY:
            self.sampling_frequency = read_float(payload, at)
        elif element_id == ids.CHANNELS:
            self.channels = read_uint(payload, at)
        elif element_id == ids.BIT_DEPTH:
            self.bit_depth = read_uint(payload, at)

    @property
    def is_audio(self) -> bool:
        return self.type == ids.TRACK_TYPE_AUDIO

    def stream_info(self) -> StreamInfo:
        """The audio stream this entry describes; ContainerError for codecs other than Opus and Vorbis."""
        where = f"the TrackEntry at byte {self.offset}"
        if self.number == 0:
            raise ContainerError(f"missing or zero TrackNumber in {where}")
        # a float element may hold NaN, an infinity or 1e308: none is a rate (nor rounds to one)
        frequency = self.sampling_frequency
        rate = round(frequency) if 0 < frequency <= MAX_RATE else 0
        if rate <= 0 or not 1 <= self.channels <= 255:
            raise ContainerError(f"invalid SamplingFrequency or Channels in {where}")
        if self.codec_id == "A_OPUS":
            head = parse_opus_head(self.codec_private, self.offset) if self.codec_private else None
            pre_skip = head.pre_skip if head else 0
            if self.codec_delay_ns:
                pre_skip = self._delay_samples(OPUS_RATE)
            return StreamInfo(
                codec="opus",
                sample_rate=rate,
                channels=self.channels,
                pre_skip=pre_skip,
                extradata=self.codec_private,
            )
        if self.codec_id == "A_VORBIS":
            headers = xiph_unlace(self.codec_private, self.offset) if self.codec_private else []
            if len(headers) != len(VORBIS_HEADERS) or not all(
                header.startswith(magic) for header, magic in zip(headers, VORBIS_HEADERS, strict=True)
            ):
                raise ContainerError(f"A_VORBIS CodecPrivate is not the three Vorbis headers in {where}")
            parse_vorbis_id(headers[0], self.offset)
            return StreamInfo(
                codec="vorbis",
                sample_rate=rate,
                channels=self.channels,
                pre_skip=self._delay_samples(rate),
                extradata=self.codec_private,
            )
        raise ContainerError(f"unsupported Matroska codec {self.codec_id!r} in {where}")

    def _delay_samples(self, rate: int) -> int:
        return round(self.codec_delay_ns * rate / NS_PER_SECOND)
