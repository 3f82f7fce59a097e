"""The writer's files: append-only WAV files, session segments, and resuming after a crash."""

import errno
import itertools
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from voxbus.writer.recording import SessionRecording
from voxbus.writer.wavfile import (
    HEADER_SIZE,
    MAX_DATA_BYTES,
    LostDataError,
    WavAppender,
    WavFormatError,
    WavTooLargeError,
    wav_header,
)

SID = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
CHUNK_FRAMES = (1, 166, 2048, 32768)


def signal(frames: int, rate: int, channels: int, seed: int = 7) -> npt.NDArray[np.int16]:
    """Deterministic noise plus a tone per channel, shaped (frames, channels)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[:, None] / rate
    tone = 8000 * np.sin(2 * np.pi * 440.0 * (1 + np.arange(channels)) * t)
    noise = rng.normal(0, 3000, size=(frames, channels))
    return np.clip(tone + noise, -32768, 32767).astype(np.int16)


def chunks(audio: npt.NDArray[np.int16], sizes: tuple[int, ...] = CHUNK_FRAMES) -> Iterator[bytes]:
    """The audio as s16le bytes, cut into chunks of whole frames cycling through `sizes`."""
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(audio):
            return
        yield audio[start : start + size].astype("<i2").tobytes()
        start += size


def data_of(path: Path) -> bytes:
    """The audio bytes of a WAV file, after checking that its header's sizes match the file."""
    raw = path.read_bytes()
    riff_size, data_size = struct.unpack_from("<I", raw, 4)[0], struct.unpack_from("<I", raw, 40)[0]
    assert (riff_size, data_size) == (len(raw) - 8, len(raw) - HEADER_SIZE)
    return raw[HEADER_SIZE:]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under `root` by relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def record(root: Path, audio: npt.NDArray[np.int16], rate: int, segment_seconds: float) -> None:
    """An uninterrupted run."""
    root.mkdir(exist_ok=True)
    with SessionRecording.create(root, SID, rate, audio.shape[1], segment_seconds) as rec:
        for chunk in chunks(audio):
            rec.write(chunk)


def test_long_mono_session_is_cut_into_exact_segments(tmp_path: Path) -> None:
    rate = 16000
    audio = signal(95 * rate, rate, 1)
    rec = SessionRecording.create(tmp_path, SID, rate, 1, 30)
    assert rec.segment_frames == 30 * rate
    written = 0
    for n, chunk in enumerate(chunks(audio)):
        rec.write(chunk)
        written += len(chunk) // 2
        if n % 40 == 39:
            rec.flush(fsync=n % 80 == 79)
            info = soundfile.info(tmp_path / rec.file_path)
            assert (info.frames, info.samplerate, info.channels) == (written, rate, 1)
            read, _ = soundfile.read(tmp_path / rec.file_path, dtype="int16", always_2d=True)
            assert np.array_equal(read, audio[:written])
            current = soundfile.info(tmp_path / rec.segments[-1])
            assert current.frames == written - (len(rec.segments) - 1) * rec.segment_frames
    rec.close()

    assert rec.frames == len(audio)
    assert rec.duration_seconds == 95.0
    assert rec.file_path == f"{SID}.wav"
    assert rec.segments == tuple(f"{SID}/segment_{k:05d}.wav" for k in range(4))
    assert sorted(p.name for p in (tmp_path / SID).iterdir()) == [f"segment_{k:05d}.wav" for k in range(4)]
    parts = []
    for segment, seconds in zip(rec.segments, (30, 30, 30, 5), strict=True):
        info = soundfile.info(tmp_path / segment)
        assert (info.frames, info.samplerate, info.channels) == (seconds * rate, rate, 1)
        read, _ = soundfile.read(tmp_path / segment, dtype="int16", always_2d=True)
        parts.append(read)
    assert np.array_equal(np.concatenate(parts), audio)
    whole = data_of(tmp_path / rec.file_path)
    assert whole == audio.astype("<i2").tobytes()
    assert b"".join(data_of(tmp_path / s) for s in rec.segments) == whole


@pytest.mark.parametrize(
    ("frames", "expected"), [(62400, (24000, 24000, 14400)), (48000, (24000, 24000)), (1, (1,))]
)
def test_stereo_segments_end_on_frame_boundaries(
    tmp_path: Path, frames: int, expected: tuple[int, ...]
) -> None:
    audio = signal(frames, 48000, 2)
    record(tmp_path, audio, 48000, 0.5)
    start = 0
    for k, count in enumerate(expected):
        path = tmp_path / SID / f"segment_{k:05d}.wav"
        read, rate = soundfile.read(path, dtype="int16", always_2d=True)
        assert rate == 48000
        assert np.array_equal(read, audio[start : start + count])
        start += count
    assert len(list((tmp_path / SID).iterdir())) == len(expected)
    assert data_of(tmp_path / f"{SID}.wav") == audio.astype("<i2").tobytes()


def test_session_without_audio_has_an_empty_whole_file_and_no_segments(tmp_path: Path) -> None:
    with SessionRecording.create(tmp_path, SID, 16000, 1, 30) as rec:
        assert rec.segments == ()
    info = soundfile.info(tmp_path / f"{SID}.wav")
    assert (info.frames, info.samplerate) == (0, 16000)
    assert list((tmp_path / SID).iterdir()) == []


RATE = 16000
SEGMENT = 8000  # frames in 0.5 s at 16 kHz
TOTAL = 4 * SEGMENT + 3210


@pytest.mark.parametrize(
    "crash_at", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, 3 * SEGMENT + 77, TOTAL - 1]
)
@pytest.mark.parametrize("tail", ["unflushed", "flushed", "torn"])
def test_resume_after_crash_gives_identical_files(tmp_path: Path, crash_at: int, tail: str) -> None:
    audio = signal(TOTAL, RATE, 1)
    record(tmp_path / "ref", audio, RATE, 0.5)
    root = tmp_path / "crash"
    root.mkdir()

    rec = SessionRecording.create(root, SID, RATE, 1, 0.5)
    for chunk in chunks(audio[:crash_at]):
        rec.write(chunk)
    rec.flush()  # the service checkpoints `crash_at` frames now
    # Audio written after the checkpoint but never acknowledged, crossing a segment boundary.
    rec.write(audio[crash_at : crash_at + SEGMENT + 500].tobytes())
    if tail == "flushed":
        rec.flush(fsync=False)
    rec.abandon()
    if tail == "torn":  # a crash in the middle of a frame, in every file written since the checkpoint
        since = [root / SID / f"segment_{k:05d}.wav" for k in range(crash_at // SEGMENT, 5)]
        for path in [root / f"{SID}.wav", *(p for p in since if p.exists())]:
            with path.open("ab") as file:
                file.write(b"\x7f")

    with SessionRecording.resume(root, SID, RATE, 1, 0.5, frames=crash_at) as rec:
        assert rec.frames == crash_at
        assert soundfile.info(root / rec.file_path).frames == crash_at
        for chunk in chunks(audio[crash_at:], sizes=(333, 1, 4000)):
            rec.write(chunk)
        assert rec.segments == tuple(f"{SID}/segment_{k:05d}.wav" for k in range(5))

    assert snapshot(root) == snapshot(tmp_path / "ref")


def test_resume_twice(tmp_path: Path) -> None:
    audio = signal(TOTAL, RATE, 1)
    record(tmp_path / "ref", audio, RATE, 0.5)
    root = tmp_path / "crash"
    root.mkdir()
    rec = SessionRecording.create(root, SID, RATE, 1, 0.5)
    checkpoint = 0
    for crash_at in (5000, SEGMENT * 2, SEGMENT * 3 + 1):
        rec.write(audio[checkpoint:crash_at].tobytes())
        rec.flush()
        rec.write(audio[crash_at : crash_at + 9000].tobytes())
        rec.abandon()
        rec = SessionRecording.resume(root, SID, RATE, 1, 0.5, frames=crash_at)
        checkpoint = crash_at
    rec.write(audio[checkpoint:].tobytes())
    rec.close()
    assert snapshot(root) == snapshot(tmp_path / "ref")


def test_resume_from_nothing_after_a_crash_during_create(tmp_path: Path) -> None:
    audio = signal(SEGMENT + 10, RATE, 1)
    record(tmp_path / "ref", audio, RATE, 0.5)
    root = tmp_path / "crash"
    root.mkdir()
    (root / f"{SID}.wav").write_bytes(b"RIFF")  # the header never fully reached the disk
    with SessionRecording.resume(root, SID, RATE, 1, 0.5, frames=0) as rec:
        rec.write(audio.tobytes())
    assert snapshot(root) == snapshot(tmp_path / "ref")

    with SessionRecording.resume(tmp_path / "ref", SID, RATE, 1, 0.5, frames=0) as rec:
        assert rec.segments == ()
    assert list((tmp_path / "ref" / SID).iterdir()) == []
    assert soundfile.info(tmp_path / "ref" / f"{SID}.wav").frames == 0


def test_create_replaces_what_an_attempt_that_checkpointed_nothing_left(tmp_path: Path) -> None:
    audio = signal(SEGMENT + 10, RATE, 1)
    record(tmp_path / "ref", audio, RATE, 0.5)
    root = tmp_path / "crash"
    root.mkdir()
    rec = SessionRecording.create(root, SID, 8000, 2, 0.5)
    rec.write(signal(3 * SEGMENT, 8000, 2).tobytes())
    rec.flush()
    rec.abandon()
    record(root, audio, RATE, 0.5)
    assert snapshot(root) == snapshot(tmp_path / "ref")


def test_resume_refuses_files_shorter_than_the_checkpoint(tmp_path: Path) -> None:
    with SessionRecording.create(tmp_path, SID, RATE, 1, 0.5) as rec:
        rec.write(signal(SEGMENT + 100, RATE, 1).tobytes())
    with pytest.raises(LostDataError, match="lost acknowledged data"):
        SessionRecording.resume(tmp_path, SID, RATE, 1, 0.5, frames=SEGMENT + 101)
    with pytest.raises(LostDataError, match="lost acknowledged data"):
        WavAppender.reopen(tmp_path / SID / "segment_00001.wav", RATE, 1, 101)
    (tmp_path / SID / "segment_00000.wav").unlink()
    with pytest.raises(LostDataError, match=r"segment_00000\.wav is missing"):
        SessionRecording.resume(tmp_path, SID, RATE, 1, 0.5, frames=SEGMENT)
    with pytest.raises(LostDataError, match="missing"):
        WavAppender.reopen(tmp_path / "absent.wav", RATE, 1, 1)


def test_reopen_refuses_another_format(tmp_path: Path) -> None:
    with SessionRecording.create(tmp_path, SID, RATE, 1, 0.5) as rec:
        rec.write(signal(100, RATE, 1).tobytes())
    with pytest.raises(WavFormatError, match="8000 Hz"):
        SessionRecording.resume(tmp_path, SID, 8000, 1, 0.5, frames=100)
    with pytest.raises(WavFormatError, match="2 channel"):
        WavAppender.reopen(tmp_path / f"{SID}.wav", RATE, 2, 50)
    other = tmp_path / "other.wav"
    other.write_bytes(b"\0" * 100)
    with pytest.raises(WavFormatError, match="not a canonical"):
        WavAppender.reopen(other, RATE, 1, 0)


@pytest.mark.parametrize("session_id", ["../etc", "", SID.upper(), SID.replace("-", ""), f"{SID}/..", "x"])
def test_session_id_must_be_a_canonical_uuid(tmp_path: Path, session_id: str) -> None:
    with pytest.raises(ValueError, match="canonical UUID"):
        SessionRecording.create(tmp_path, session_id, RATE, 1, 0.5)
    with pytest.raises(ValueError, match="canonical UUID"):
        SessionRecording.resume(tmp_path, session_id, RATE, 1, 0.5, frames=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("segment_seconds", [0.0, -1.0, float("nan"), float("inf"), 1e-5])
def test_segment_length_must_hold_a_frame(tmp_path: Path, segment_seconds: float) -> None:
    with pytest.raises(ValueError, match="segment"):
        SessionRecording.create(tmp_path, SID, RATE, 1, segment_seconds)


def test_partial_frames_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    with SessionRecording.create(tmp_path, SID, 48000, 2, 0.5) as rec:
        rec.write(b"\0" * 8)
        with pytest.raises(ValueError, match="whole number of 4-byte frames"):
            rec.write(b"\0" * 6)
        rec.write(bytearray(4))
        assert rec.frames == 3
    assert soundfile.info(tmp_path / f"{SID}.wav").frames == 3


def test_wav_size_limit_is_explicit(tmp_path: Path) -> None:
    with pytest.raises(WavTooLargeError, match="RF64"):
        wav_header(RATE, 1, MAX_DATA_BYTES + 1)
    with WavAppender.create(tmp_path / "a.wav", RATE, 1) as wav:
        assert wav.check_append(MAX_DATA_BYTES - 1) == (MAX_DATA_BYTES - 1) // 2
        with pytest.raises(WavTooLargeError, match="RF64"):
            wav.check_append(MAX_DATA_BYTES + 1)


def test_appender_updates_header_in_place(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    with WavAppender.create(path, 8000, 1) as wav:
        assert path.read_bytes() == wav_header(8000, 1, 0)
        wav.append(b"\1\0" * 10)
        wav.flush(fsync=False)
        assert path.read_bytes() == wav_header(8000, 1, 20) + b"\1\0" * 10
        wav.append(memoryview(b"\2\0" * 3))
        assert wav.frames == 13
    assert path.read_bytes() == wav_header(8000, 1, 26) + b"\1\0" * 10 + b"\2\0" * 3
    with pytest.raises(FileExistsError):
        WavAppender.create(path, 8000, 1)
    with pytest.raises(ValueError, match="closed"):
        wav.append(b"\0\0")


def test_after_a_failed_write_only_resume_continues(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = signal(2 * SEGMENT + 10, RATE, 1)
    record(tmp_path / "ref", audio, RATE, 0.5)
    root = tmp_path / "crash"
    root.mkdir()
    rec = SessionRecording.create(root, SID, RATE, 1, 0.5)
    rec.write(audio[:5000].tobytes())
    rec.flush()

    def no_space(*args: object, **kwargs: object) -> WavAppender:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(WavAppender, "create", no_space)
        with pytest.raises(OSError, match="No space"):
            rec.write(audio[5000:9000].tobytes())  # the whole file took it, segment 1 could not start
    with pytest.raises(RuntimeError, match="resume it from the last checkpoint"):
        rec.write(audio[9000:9001].tobytes())
    with pytest.raises(RuntimeError, match="resume it from the last checkpoint"):
        rec.flush()
    rec.close()

    with SessionRecording.resume(root, SID, RATE, 1, 0.5, 5000) as rec:
        rec.write(audio[5000:].tobytes())
    assert snapshot(root) == snapshot(tmp_path / "ref")
