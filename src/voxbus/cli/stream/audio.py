"""The file to stream, decoded on the client with PyAV (FFmpeg): WAV, FLAC, MP3, Opus or Vorbis in
Ogg, and whatever else FFmpeg reads. Out come 16-bit PCM chunks of `CHUNK_SECONDS` at a rate the
session protocol accepts (the file's own, or the next accepted one up; 96 kHz for a file above
that), mono or stereo (more
channels are mixed down to stereo by FFmpeg's resampler).

Decoding is lazy: a chunk is decoded when it is about to be sent, so a long file takes no more
memory than a few chunks. The chunks are always the same for the same file, which is what lets a
resumed session skip the ones the server already has.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av

from voxbus.cli.echo_client.errors import UsageError
from voxbus.common.constants import SAMPLE_RATES

CHUNK_SECONDS: Final = 0.1
SAMPLE_WIDTH: Final = 2


@dataclass(frozen=True, slots=True)
class AudioFile:
    """What will be sent: at `rate` Hz, `channels` channels, about `seconds` long (None: the
    container does not say)."""

    path: Path
    rate: int
    channels: int
    seconds: float | None
    source_rate: int

    @property
    def chunk_bytes(self) -> int:
        return int(self.rate * CHUNK_SECONDS) * self.channels * SAMPLE_WIDTH

    @property
    def bytes_per_second(self) -> int:
        return self.rate * self.channels * SAMPLE_WIDTH

    def chunks(self) -> Iterator[bytes]:
        """The file's PCM in chunks of `chunk_bytes` (the last one shorter)."""
        pending = bytearray()
        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.audio[0]
                layout = "mono" if self.channels == 1 else "stereo"
                resampler = av.AudioResampler(format="s16", layout=layout, rate=self.rate)
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        pending += out.to_ndarray().tobytes()
                    while len(pending) >= self.chunk_bytes:
                        yield bytes(pending[: self.chunk_bytes])
                        del pending[: self.chunk_bytes]
                for out in resampler.resample(None):
                    pending += out.to_ndarray().tobytes()
        except av.FFmpegError as exc:
            raise UsageError(f"{self.path}: cannot decode: {exc}") from None
        for start in range(0, len(pending), self.chunk_bytes):
            yield bytes(pending[start : start + self.chunk_bytes])


def open_audio(path: Path) -> AudioFile:
    """The file's audio as it will be sent, or a UsageError naming what is wrong with it."""
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise UsageError(f"{path}: no audio in it")
            stream = container.streams.audio[0]
            source_rate = int(stream.rate or 0)
            channels = min(max(int(stream.channels or 1), 1), 2)
            seconds = container.duration / av.time_base if container.duration else None
    except av.FFmpegError as exc:
        raise UsageError(f"{path}: not an audio file FFmpeg can read ({exc})") from None
    if source_rate <= 0:
        raise UsageError(f"{path}: the audio has no sample rate")
    rate = next((accepted for accepted in SAMPLE_RATES if accepted >= source_rate), SAMPLE_RATES[-1])
    return AudioFile(path, rate, channels, seconds, source_rate)
