"""The client's audio files: a mono 16-bit WAV to send, and the echoed audio written back."""

from dataclasses import dataclass
from pathlib import Path
from typing import Final

# soundfile ships no type information; it is used only here.
import soundfile

from voxbus.cli.echo_client.errors import UsageError

SAMPLE_WIDTH: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class WavInput:
    """A mono 16-bit PCM WAV file: its rate and its samples as s16le bytes."""

    path: Path
    rate: int
    pcm: bytes

    def check_rate(self, rate: int) -> None:
        if self.rate != rate:
            raise UsageError(f"{self.path} is {self.rate} Hz; the server expects {rate} Hz (resample it)")

    def chunks(self, samples: int) -> list[bytes]:
        size = samples * SAMPLE_WIDTH
        return [self.pcm[start : start + size] for start in range(0, len(self.pcm), size)]


def read_wav(path: Path) -> WavInput:
    """The file's audio, or a UsageError that names what is wrong with it."""
    if not path.is_file():  # libsndfile would say only "System error"
        raise UsageError(f"{path}: no such file")
    try:
        with soundfile.SoundFile(path) as wav:
            kind: str = wav.format
            channels: int = wav.channels
            subtype: str = wav.subtype
            if kind not in ("WAV", "WAVEX"):
                raise UsageError(f"{path} is {kind}, not WAV")
            if channels != 1:
                raise UsageError(f"{path} has {channels} channels; the echo protocol takes mono")
            if subtype != "PCM_16":
                raise UsageError(
                    f"{path} holds {subtype} samples; the echo protocol takes 16-bit PCM (PCM_16)"
                )
            rate: int = wav.samplerate
            pcm = bytes(wav.buffer_read(dtype="int16"))
    except soundfile.LibsndfileError as exc:
        raise UsageError(f"cannot read {path} as a WAV file: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return WavInput(path=path, rate=rate, pcm=pcm)


class WavOutput:
    """The echoed audio as a 16-bit mono WAV file, valid once closed."""

    def __init__(self, path: Path, rate: int) -> None:
        try:
            self._file = soundfile.SoundFile(
                path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV"
            )
        except (soundfile.LibsndfileError, OSError) as exc:
            raise UsageError(f"cannot write {path}: {exc}") from exc
        self._odd = b""  # a byte of a sample whose other byte is in the next message

    def write(self, data: bytes) -> None:
        # A few KB at a time on a local disk: quicker than handing each write to a thread.
        data = self._odd + data
        whole = len(data) - len(data) % SAMPLE_WIDTH
        self._odd = data[whole:]
        if whole:
            self._file.buffer_write(data[:whole], dtype="int16")

    def close(self) -> None:
        self._file.close()
