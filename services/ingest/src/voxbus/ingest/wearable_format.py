"""What a wearable's audio is: a session's format, from its events' data and the connect query."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from voxbus.common.constants import SAMPLE_RATES
from voxbus.common.records import AudioFormat
from voxbus.common.wyoming_events import PCM_WIDTH, WYOMING_CODECS, AudioData
from voxbus.ingest.sessions import CODEC_OF_FORMAT, FORMAT_OF_CODEC

_CHANNELS: Final = (1, 2)
BARE: Final = AudioData()  # what a bare packet (no header) says of its format: nothing
_MAX_USER_ID: Final = 256  # as audio-start's `user_id`


@dataclass(frozen=True, slots=True)
class WearableFormat:
    """A session's audio as the client sends it: `codec` "opus" or "pcm" (16-bit)."""

    codec: str
    rate: int
    channels: int

    def record_format(self) -> AudioFormat:
        return AudioFormat(
            codec=CODEC_OF_FORMAT.get(self.codec, self.codec), rate=self.rate, channels=self.channels
        )

    @classmethod
    def of_record(cls, fmt: AudioFormat) -> "WearableFormat":
        return cls(codec=FORMAT_OF_CODEC.get(fmt.codec, fmt.codec), rate=fmt.rate, channels=fmt.channels)

    def __str__(self) -> str:
        return f"{self.codec} at {self.rate} Hz, {self.channels} channel(s)"

    def mismatch(self, data: AudioData) -> str | None:
        """What in a chunk's data differs from this format (a field it leaves out is this one's)."""
        if data is BARE:  # a bare packet, most of a wearable's traffic: it says nothing
            return None
        given = {"format": data.format, "rate": data.rate, "channels": data.channels}
        ours = {"format": self.codec, "rate": self.rate, "channels": self.channels}
        for name, value in given.items():
            if value is not None and value != ours[name]:
                return f"{name} {value} is not the session's {ours[name]}"
        if self.codec == "pcm" and data.width is not None and data.width != PCM_WIDTH:
            return f"width {data.width} is not the session's {PCM_WIDTH}"
        return None


@dataclass(frozen=True, slots=True)
class Options:
    """The connect query's options (`/ws?codec=&strip_header=&sample_rate=&user_id=`); a TCP
    connection has the defaults."""

    codec: str = "opus"
    strip_header: bool = False
    rate: int = 16000
    user_id: str = "anonymous"

    @classmethod
    def of(cls, query: Mapping[str, str], default_codec: str) -> "Options | None":
        """The options a connect query gives; None when one is invalid."""
        codec = query.get("codec", default_codec).lower()
        strip = query.get("strip_header", "false").lower()
        try:
            rate = int(query.get("sample_rate", "16000"))
        except ValueError:
            rate = 0
        user_id = query.get("user_id", "anonymous")
        if (
            not 0 < len(user_id) <= _MAX_USER_ID
            or codec not in WYOMING_CODECS
            or strip not in ("true", "false", "1", "0")
            or rate not in SAMPLE_RATES
        ):
            return None
        return cls(
            codec=codec,
            strip_header=strip in ("true", "1"),
            rate=rate,
            user_id=user_id,
        )


def format_of(data: AudioData, options: Options) -> tuple[WearableFormat | None, str]:
    """The format an audio-start (or the packet that opens a session) says, its missing fields
    the query's; None and why when voxbus cannot record it."""
    codec = data.format or options.codec
    rate = data.rate or options.rate
    channels = data.channels or 1
    if rate not in SAMPLE_RATES:
        return None, f"rate {rate} is not one of {list(SAMPLE_RATES)}"
    if channels not in _CHANNELS:
        return None, f"channels {channels} is not 1 or 2"
    if codec == "pcm" and data.width not in (None, PCM_WIDTH):
        return None, f"width {data.width}: PCM is taken as 16-bit (width {PCM_WIDTH})"
    return WearableFormat(codec=codec, rate=rate, channels=channels), ""
