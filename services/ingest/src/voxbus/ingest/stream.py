"""A session's records on `voxbus.audio.raw`, as one socket sends them.

Seqs are `epoch << 32 | n`: the epoch is incremented in the store at every attach, so the records
of a resumed session continue above everything sent before, whichever pod sends them and however
stale its counters, without a store write per chunk.
"""

import asyncio
import time

from voxbus.common.bus.base import Bus, Delivered
from voxbus.common.records import AudioFormat, ChunkEncoder, EchoSettings, SessionStart, SessionStop


class RawStream:
    def __init__(self, bus: Bus, topic: str, session_id: str, fmt: AudioFormat, epoch: int) -> None:
        self._bus, self._topic = bus, topic
        self.session_id, self.format = session_id, fmt
        self._seq = epoch << 32
        self._chunks = ChunkEncoder(session_id, fmt)

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    async def start(
        self, *, protocol: str, user_id: str, echo: EchoSettings, resume: bool
    ) -> "asyncio.Future[Delivered]":
        record = SessionStart(
            session_id=self.session_id,
            seq=self._next(),
            ts_ns=time.time_ns(),
            format=self.format,
            protocol=protocol,
            user_id=user_id,
            echo=echo,
            resume=resume,
        )
        return await self._bus.send(self._topic, record.to_message())

    async def chunk(self, audio: bytes, number: int) -> "asyncio.Future[Delivered]":
        """Queue chunk `number` of the session (batched by the producer); the future resolves
        once it is durable."""
        message = self._chunks.message(self._next(), time.time_ns(), audio, number=number)
        return await self._bus.send(self._topic, message)

    async def stop(self, reason: str) -> "asyncio.Future[Delivered]":
        record = SessionStop(
            session_id=self.session_id, seq=self._next(), ts_ns=time.time_ns(), reason=reason
        )
        return await self._bus.send(self._topic, record.to_message())
