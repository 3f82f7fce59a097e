"""Prompts: audio voxbus plays to a caller through the egress path (docs/architecture.md, return
routes), today the greeting (`TELEPHONY_GREETING_WAV`) once a call's media socket opens.

The WAV is read once at start and resampled once per call rate (soxr), padded to whole 20 ms
frames. Playing it produces `EgressKind.PROMPT` records to the egress partition of the ingest pod
holding the call's socket; that socket's pacer sends them at real time, ahead of live audio. A
greeting is produced once per session (a replayed `CallMedia` event finds it marked), and a clear
(`EgressKind.CLEAR`) stops whatever is queued on the socket.
"""

import logging
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import soundfile
import soxr

from voxbus.common.bus.base import Bus
from voxbus.common.constants import Key
from voxbus.common.records import EgressEncoder, EgressKind
from voxbus.common.settings import SettingsError
from voxbus.common.state import Route, StateError
from voxbus.common.store.base import StateStore
from voxbus.telephony import metrics
from voxbus.telephony.mulaw import mulaw_encode

log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.02
RECORD_SECONDS: Final = 1.0  # a prompt goes out in records of this much audio
GREETED_TTL_MS: Final = 24 * 3600 * 1000


class Greeting:
    """A WAV file's audio, mono, as 16-bit PCM at any rate (each made once)."""

    def __init__(self, samples: npt.NDArray[np.float32], rate: int) -> None:
        self._samples, self._rate = samples, rate
        self._pcm: dict[int, bytes] = {}

    @classmethod
    def load(cls, path: Path, *, max_seconds: float) -> "Greeting":
        """`SettingsError`, saying why, for a file that is not audio or plays longer than
        `max_seconds` (the service does not start)."""
        try:
            samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise SettingsError(f"TELEPHONY_GREETING_WAV: {path} is not a sound file: {exc}") from None
        if len(samples) / rate > max_seconds:
            raise SettingsError(
                f"TELEPHONY_GREETING_WAV: {path} plays {len(samples) / rate:.1f} s, more than "
                f"TELEPHONY_MAX_QUEUED_SECONDS ({max_seconds:g} s) a call's socket holds"
            )
        return cls(samples.mean(axis=1, dtype=np.float32), int(rate))

    @property
    def seconds(self) -> float:
        return len(self._samples) / self._rate

    def pcm(self, rate: int) -> bytes:
        """The greeting at `rate`, 16-bit little-endian, a whole number of 20 ms frames."""
        cached = self._pcm.get(rate)
        if cached is None:
            samples = self._samples if rate == self._rate else soxr.resample(self._samples, self._rate, rate)
            frame = int(rate * FRAME_SECONDS)
            padded = np.zeros(-(-len(samples) // frame) * frame, dtype=np.float32)
            padded[: len(samples)] = samples
            pcm = np.clip(np.round(padded * 32768), -32768, 32767).astype("<i2")
            cached = self._pcm[rate] = pcm.tobytes()
        return cached


class Prompts:
    def __init__(self, bus: Bus, store: StateStore, *, egress_topic: str, greeting: Greeting | None) -> None:
        self._bus, self._store, self._topic, self._greeting = bus, store, egress_topic, greeting

    def greeting_pcm(self, rate: int) -> bytes:
        """What a call at `rate` hears as its greeting (nothing without one)."""
        return b"" if self._greeting is None else self._greeting.pcm(rate)

    async def greet(self, session_id: str, rate: int, codec: str = "pcm_s16le") -> None:
        """Play the greeting on the session's socket, once, in the socket's codec."""
        if self._greeting is None:
            return
        if not await self._store.set(Key.GREETED + session_id, "1", ttl_ms=GREETED_TTL_MS, nx=True):
            return  # a replay of the event: produced already
        audio, width = self._greeting.pcm(rate), 2
        if codec == "mulaw":
            audio, width = mulaw_encode(np.frombuffer(audio, dtype="<i2")), 1
        step = int(rate * RECORD_SECONDS) * width
        await self._send(session_id, [audio[start : start + step] for start in range(0, len(audio), step)])

    async def clear(self, session_id: str) -> bool:
        """Drop what the session's socket has queued for the caller; False with no socket."""
        return await self._send(session_id, [b""], kind=EgressKind.CLEAR)

    async def _send(self, session_id: str, pieces: list[bytes], kind: EgressKind = EgressKind.PROMPT) -> bool:
        partition = await self._partition(session_id)
        if partition is None:
            metrics.PROMPTS.labels("no_route").inc()
            log.warning(
                "no socket holds the call's session: nothing played", extra={"session_id": session_id}
            )
            return False
        encoder = EgressEncoder(session_id)
        deliveries = [
            await self._bus.send(self._topic, encoder.message(piece, kind=kind), partition=partition)
            for piece in pieces
        ]
        for delivery in deliveries:
            await delivery
        metrics.PROMPTS.labels(kind.value).inc()
        return True

    async def _partition(self, session_id: str) -> int | None:
        text = await self._store.get(Key.ROUTE + session_id)
        if text is None:
            return None
        try:
            return Route.decode(text).partition
        except StateError as exc:
            log.warning("unreadable route: %s", exc, extra={"session_id": session_id})
            return None
