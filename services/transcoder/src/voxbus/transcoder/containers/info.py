"""What a decoder needs to know about the audio stream a container carries."""

from dataclasses import dataclass
from typing import Literal

Codec = Literal["opus", "vorbis", "flac"]
CODECS: tuple[Codec, ...] = ("opus", "vorbis", "flac")
OPUS_RATE = 48000


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """The audio stream of a container, as its headers describe it.

    `sample_rate` is what the container states: for Ogg Opus that is OpusHead's *input* rate, yet an
    Opus decoder always produces `OPUS_RATE` (see `output_rate`). `pre_skip` counts samples at the
    output rate to drop from the start: OpusHead's pre-skip, or Matroska's CodecDelay. `extradata` is
    what an FFmpeg decoder takes as extradata: OpusHead; the three Vorbis headers, Xiph-laced (as in
    Matroska's CodecPrivate); FLAC's 34-byte STREAMINFO body. `bits_per_sample` and `total_samples`
    come from FLAC's STREAMINFO (`total_samples` is None when unknown) and are defaults otherwise.
    """

    codec: Codec
    sample_rate: int
    channels: int
    pre_skip: int = 0
    extradata: bytes = b""
    bits_per_sample: int = 16
    total_samples: int | None = None

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, not {self.codec!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, not {self.sample_rate}")
        if not 1 <= self.channels <= 255:
            raise ValueError(f"channels must be 1..255, not {self.channels}")
        if self.pre_skip < 0:
            raise ValueError(f"pre_skip must not be negative, not {self.pre_skip}")
        if not 1 <= self.bits_per_sample <= 32:
            raise ValueError(f"bits_per_sample must be 1..32, not {self.bits_per_sample}")
        if self.total_samples is not None and self.total_samples < 0:
            raise ValueError(f"total_samples must not be negative, not {self.total_samples}")

    @property
    def output_rate(self) -> int:
        """The rate a decoder produces: always 48 kHz for Opus, the stated rate otherwise."""
        return OPUS_RATE if self.codec == "opus" else self.sample_rate
