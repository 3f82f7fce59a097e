"""The transcoder's batch handler: `voxbus.audio.raw` records in, `voxbus.audio.pcm` records out.

Replay safety (docs/architecture.md, delivery and replay guarantees): every output record
carries its source record's session seq, and the session's highest produced seq is stored after
the output is durable (`transcoded_seq`), so records replayed after a crash or a rebalance are
decoded again (to rebuild decoder state) but not produced twice; the writer deduplicates what
comes again by its frame position (`pos`).

Committed offsets: a compressed codec's decoder state cannot be rebuilt mid-stream, so a
partition's commit stays at the start record of its oldest open session: whoever consumes the
partition next decodes open sessions from their start and produces identical output. PCM-like
sessions (pcm, mulaw, alaw, wav) hold no state between whole frames when no resampling is
needed; for them the commit moves on, and a consumer that meets such a session mid-stream
rebuilds its pipeline from the session record in the state store.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from voxbus.common.bus.base import Bus, ConsumedRecord, TopicPartition
from voxbus.common.constants import SessionStatus
from voxbus.common.records import (
    AudioChunk,
    AudioFormat,
    BusMessage,
    RecordError,
    SessionError,
    SessionStart,
    SessionStop,
    decode,
)
from voxbus.common.runtime import session_context
from voxbus.common.session_state import SessionHashes, SessionState, SessionUpdate
from voxbus.common.state import StateError
from voxbus.common.store.base import StateStore
from voxbus.transcoder import metrics
from voxbus.transcoder.decoders import DecodeError, Decoder, WavDecoder, make_decoder
from voxbus.transcoder.pipeline import SessionPipeline
from voxbus.transcoder.wav import WavFormat

log = logging.getLogger(__name__)

PCM_CODEC = "pcm_s16le"
# A resumed client may continue its byte stream or start a new file: these magics tell.
_HEADER_MAGIC = {"wav": b"RIFF", "ogg": b"OggS", "webm": b"\x1a\x45\xdf\xa3", "flac": b"fLaC"}
_NOTHING_PRODUCED = -1
_MAX_OUTPUT_BYTES = 256 * 1024  # per PCM record, well under Kafka's default 1 MiB message limit
_MAX_HELD_OUTPUT_BYTES = 8 * 1024 * 1024  # a batch's output held before it is sent


class _Outputs:
    """A batch's output records, and their bytes: once these pass `_MAX_HELD_OUTPUT_BYTES` the
    handler sends what it holds before decoding on, so one chunk of any codec holds a bounded
    amount of PCM in memory however long it decodes to (a legitimate 1 MiB of 6 kbit/s Opus is
    about 23 minutes of audio: 530 MB of 96 kHz stereo)."""

    __slots__ = ("bytes", "messages")

    def __init__(self) -> None:
        self.messages: list[BusMessage] = []
        self.bytes = 0

    def append(self, message: BusMessage) -> None:
        self.messages.append(message)
        self.bytes += len(message.value)

    def take(self) -> list[BusMessage]:
        messages, self.messages, self.bytes = self.messages, [], 0
        return messages


@dataclass(slots=True)
class _Session:
    session_id: str
    codec: str
    target: AudioFormat
    pipeline: SessionPipeline
    replay_from: int  # offset from which a replay reproduces this session's output exactly
    replay_frames: int  # frames of output before `replay_from`
    produced_through: int  # highest seq already produced durably (skip output up to here)
    chunks_in: int | None = 0  # the number of the last client chunk taken (None: not known yet)
    replay_chunks: int = 0  # client chunks taken before `replay_from`
    emitted_through: int = _NOTHING_PRODUCED  # highest seq sent in the batch under way
    frames_out: int = 0  # PCM frames this session's output holds so far (replays included)
    failed: bool = False
    error: str = ""
    wav_format_saved: bool = False
    resumed: bool = False  # the next chunk is the first after a resume
    chunks_metric: Any = None
    pending: list[bytes | memoryview] = field(default_factory=list)
    pending_pos: int = 0
    pending_seq: int = 0
    pending_ts: int = 0
    pending_bytes: int = 0

    def __post_init__(self) -> None:
        self.chunks_metric = metrics.CHUNKS.labels(self.codec)  # labels() is slow per frame

    def emit(self, seq: int, message: BusMessage, outputs: _Outputs) -> None:
        """Queue an output record unless a previous run already produced it (seq ≤ produced)."""
        self.flush(outputs)
        if seq > self.produced_through:
            outputs.append(message)
            self.emitted_through = max(self.emitted_through, seq)

    def add_pcm(self, seq: int, ts_ns: int, pcm: bytes, outputs: _Outputs) -> None:
        """Collect PCM for one record per session per batch: a chunk per 20 ms frame would cost
        more in per-record overhead than the audio itself. No record holds more than
        `_MAX_OUTPUT_BYTES`: a chunk that decodes to more is split (its records share its seq)."""
        frame_bytes = 2 * self.target.channels
        if seq <= self.produced_through:
            self.frames_out += len(pcm) // frame_bytes
            return
        view = memoryview(pcm)
        while view:
            room = _MAX_OUTPUT_BYTES - self.pending_bytes
            part = view[: room - room % frame_bytes]
            if not part:
                self.flush(outputs)
                continue
            if not self.pending:  # the record's position, and its oldest audio's arrival
                self.pending_pos, self.pending_ts = self.frames_out, ts_ns
            self.pending.append(part)
            self.pending_seq = seq
            self.pending_bytes += len(part)
            self.frames_out += len(part) // frame_bytes
            view = view[len(part) :]
            if self.pending_bytes >= _MAX_OUTPUT_BYTES:
                self.flush(outputs)

    def flush(self, outputs: _Outputs) -> None:
        if not self.pending:
            return
        chunk = AudioChunk(
            session_id=self.session_id,
            seq=self.pending_seq,
            ts_ns=self.pending_ts,
            format=self.target,
            audio=b"".join(self.pending),
            pos=self.pending_pos,
        )
        outputs.append(chunk.to_message())
        self.emitted_through = max(self.emitted_through, self.pending_seq)
        self.pending.clear()
        self.pending_bytes = 0


@dataclass(slots=True)
class _Partition:
    sessions: dict[str, _Session] = field(default_factory=dict)
    next_offset: int = 0

    def commit_offset(self) -> int:
        return min([s.replay_from for s in self.sessions.values()] + [self.next_offset])


class TranscodeHandler:
    """Keeps per-partition session state; see the module docstring for the replay rules."""

    def __init__(
        self, bus: Bus, store: StateStore, *, pcm_topic: str, max_session_hours: float | None = None
    ) -> None:
        self._bus, self._store, self._pcm_topic = bus, store, pcm_topic
        self._hashes = SessionHashes(store)
        self._max_session_hours = max_session_hours
        self._partitions: dict[TopicPartition, _Partition] = {}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        for tp in revoked:
            self._partitions.pop(tp, None)
        self._update_gauge()

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        started = time.perf_counter()
        outputs = _Outputs()
        touched: dict[str, _Session] = {}
        for record in records:
            partition = self._partitions.setdefault(record.tp, _Partition())
            await self._handle_record(partition, record, outputs, touched)
            partition.next_offset = record.offset + 1
        for session in touched.values():
            session.flush(outputs)
        await self._send(outputs)
        await self._save_progress(touched)
        self._update_gauge()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        consumed = {record.tp for record in records}
        return {tp: p.commit_offset() for tp, p in self._partitions.items() if tp in consumed}

    async def _send(self, outputs: _Outputs) -> None:
        """Produce what the batch holds and wait until it is durable. Sent before the batch
        ends, it is still safe: progress is saved only after the batch, so a crash replays the
        batch, and the writer skips what it holds by `pos`."""
        deliveries = [await self._bus.send(self._pcm_topic, message) for message in outputs.take()]
        await asyncio.gather(*deliveries)

    async def _handle_record(
        self,
        partition: _Partition,
        record: ConsumedRecord,
        outputs: _Outputs,
        touched: dict[str, _Session],
    ) -> None:
        try:
            item = decode(record.key, record.value, record.headers)
        except RecordError as exc:
            metrics.BAD_RECORDS.inc()
            log.warning("skipping a record that is not a voxbus record", extra={"reason": str(exc)})
            return
        with session_context(item.session_id):
            if isinstance(item, SessionStart):
                session = await self._start(partition, record.offset, item)
                session.emit(item.seq, _pcm_start(item, session.target).to_message(), outputs)
                touched[item.session_id] = session
            elif isinstance(item, AudioChunk):
                chunk_session = partition.sessions.get(item.session_id) or await self._take_over(
                    partition, record.offset, item
                )
                if chunk_session is not None:
                    await self._chunk(chunk_session, record.offset, item, outputs)
                    touched[item.session_id] = chunk_session
            elif isinstance(item, SessionStop):
                stopped = partition.sessions.pop(item.session_id, None) or await self._unseen_stop(
                    partition, record.offset, item
                )
                if stopped is not None:
                    await self._stop(stopped, item, outputs)
                    touched[item.session_id] = stopped

    async def _start(self, partition: _Partition, offset: int, start: SessionStart) -> _Session:
        existing = partition.sessions.get(start.session_id)
        if existing is not None and start.resume:
            existing.resumed = True  # same decoder, unless the next chunk opens a new file
            return existing
        stored = await self._stored(start.session_id)
        if existing is None and start.resume and stored.resume_offset is not None:
            # a replay that begins at a resume (the commit had moved past the session's chunks):
            # go on from the store's resume point, as for a chunk met mid-stream
            rebuilt = self._rebuilt(partition, offset, start.format, stored)
            rebuilt.resumed = True
            return rebuilt
        target = AudioFormat(codec=PCM_CODEC, rate=start.format.rate, channels=start.format.channels)
        session = _Session(
            session_id=start.session_id,
            codec=start.format.codec,
            target=target,
            pipeline=SessionPipeline.for_codec(
                start.format.codec, rate=target.rate, channels=target.channels
            ),
            replay_from=existing.replay_from if existing is not None else offset,
            replay_frames=existing.replay_frames if existing is not None else 0,
            frames_out=existing.frames_out if existing is not None else 0,
            produced_through=_produced_through(stored),
        )
        partition.sessions[start.session_id] = session
        fmt = start.format
        await self._hashes.update(
            start.session_id, SessionUpdate(codec=fmt.codec, sample_rate=fmt.rate, channels=fmt.channels)
        )
        return session

    async def _stored(self, session_id: str) -> SessionState:
        return await self._hashes.read(session_id) or SessionState(session_id=session_id)

    async def _take_over(self, partition: _Partition, offset: int, chunk: AudioChunk) -> _Session | None:
        """A chunk of a session whose start this consumer never saw: rebuild from the store.

        Only sessions that reached a stateless point have a resume point there; chunks before it
        were produced already and are skipped.
        """
        stored = await self._stored(chunk.session_id)
        if stored.ended:
            return None
        if stored.resume_offset is None:
            log.error("session met mid-stream with no resume point in the store; its chunk is skipped")
            return None
        if offset < stored.resume_offset:
            return None
        return self._rebuilt(partition, offset, chunk.format, stored)

    def _rebuilt(
        self, partition: _Partition, offset: int, declared: AudioFormat, stored: SessionState
    ) -> _Session:
        """A session's state at its resume point in the store (a stateless point: nothing of
        the decoder's but a WAV header to carry over)."""
        session_id, codec = stored.session_id, stored.codec or declared.codec
        target = AudioFormat(codec=PCM_CODEC, rate=declared.rate, channels=declared.channels)
        if codec == "wav":
            if stored.wav_format is None:
                raise StateError("a WAV session's resume point has no wav_format")
            decoder: Decoder = WavDecoder.after_header(WavFormat(**stored.wav_format))
        else:
            decoder = make_decoder(codec, target.rate, target.channels)
        frames, chunks = stored.resume_frames, stored.resume_chunks
        log.info("took over a session mid-stream", extra={"codec": codec, "offset": offset, "frames": frames})
        session = _Session(
            session_id=session_id,
            codec=codec,
            target=target,
            pipeline=SessionPipeline(decoder, rate=target.rate, channels=target.channels),
            replay_from=offset,
            replay_frames=frames,
            produced_through=_produced_through(stored),
            chunks_in=chunks,
            replay_chunks=chunks if chunks is not None else 0,
            frames_out=frames,
            wav_format_saved=True,
        )
        partition.sessions[session_id] = session
        return session

    async def _chunk(self, session: _Session, offset: int, chunk: AudioChunk, outputs: _Outputs) -> None:
        if session.failed or not self._in_order(session, chunk):
            return
        if session.resumed:
            session.resumed = False
            magic = _HEADER_MAGIC.get(session.codec)
            if magic is not None and chunk.audio.startswith(magic):
                await self._restart_pipeline(session, chunk, outputs)
                if session.failed:
                    return
        try:
            await self._produce(
                session, chunk.seq, chunk.ts_ns, session.pipeline.pieces(chunk.audio), outputs
            )
        except DecodeError as exc:
            self._fail(session, chunk.seq, chunk.ts_ns, str(exc), outputs)
            return
        except Exception as exc:  # one session's bytes must never stop the consumer for all others
            log.exception("decoder failed unexpectedly")
            self._fail(session, chunk.seq, chunk.ts_ns, f"decoder failure: {exc!r}", outputs)
            return
        if session.failed:
            return
        session.chunks_metric.inc()
        if session.pipeline.stateless_here:
            session.replay_from, session.replay_frames = offset + 1, session.frames_out
            session.replay_chunks = session.chunks_in or 0

    @staticmethod
    def _in_order(session: _Session, chunk: AudioChunk) -> bool:
        """Take client chunk n only right after n-1: one sent again after a resume (the greeting
        may count fewer chunks than landed, if its pod died before saving its count) is taken
        once, and nothing is taken behind a chunk the bus refused (the client sends them again
        after resuming). Chunks without a number (older producers) are all taken."""
        number, last = chunk.number, session.chunks_in
        if number is None or last is None or number == last + 1:
            if number is not None:
                session.chunks_in = number
            return True
        reason = "duplicate" if number <= last else "gap"
        metrics.SKIPPED_CHUNKS.labels(reason).inc()
        if reason == "gap":
            log.warning("chunk behind a missing one skipped", extra={"number": number, "expected": last + 1})
        return False

    async def _produce(
        self, session: _Session, seq: int, ts_ns: int, pieces: Iterable[bytes], outputs: _Outputs
    ) -> None:
        """Queue decoded PCM, up to the maximum session duration; past it the session fails.

        The recording then holds exactly MAX_SESSION_DURATION_HOURS of audio: a client sending
        faster than real time (or a codec that expands) cannot make a longer one.
        """
        frame_bytes = 2 * session.target.channels
        limit = None
        if self._max_session_hours is not None:
            limit = int(self._max_session_hours * 3600 * session.target.rate)
        for pcm in pieces:
            if limit is not None and session.frames_out + len(pcm) // frame_bytes > limit:
                keep = max(0, limit - session.frames_out) * frame_bytes
                if keep:
                    session.add_pcm(seq, ts_ns, pcm[:keep], outputs)
                reason = (
                    "decoded audio reached the maximum session duration "
                    f"({self._max_session_hours:g} h, MAX_SESSION_DURATION_HOURS)"
                )
                self._fail(session, seq, ts_ns, reason, outputs)
                return
            if pcm:
                session.add_pcm(seq, ts_ns, pcm, outputs)
                metrics.BYTES_OUT.inc(len(pcm))
                if outputs.bytes >= _MAX_HELD_OUTPUT_BYTES:
                    await self._send(outputs)

    async def _restart_pipeline(self, session: _Session, chunk: AudioChunk, outputs: _Outputs) -> None:
        """A resumed client started a new file: finish the old decoder, then start a fresh one."""
        # a DecodeError: the old stream ended mid-frame; what it decoded is kept
        with contextlib.suppress(DecodeError):
            await self._produce(session, chunk.seq, chunk.ts_ns, session.pipeline.finish_pieces(), outputs)
        if session.failed:
            return
        target = session.target
        session.pipeline = SessionPipeline.for_codec(
            session.codec, rate=target.rate, channels=target.channels
        )
        session.wav_format_saved = False
        log.info("a resumed stream started a new file", extra={"codec": session.codec})

    async def _stop(self, session: _Session, stop: SessionStop, outputs: _Outputs) -> None:
        if not session.failed:
            try:
                await self._produce(session, stop.seq, stop.ts_ns, session.pipeline.finish_pieces(), outputs)
            except DecodeError as exc:
                self._fail(session, stop.seq, stop.ts_ns, str(exc), outputs)
                return
            except Exception as exc:  # as in _chunk: fail the session, keep the consumer
                log.exception("decoder failed unexpectedly at the end of the stream")
                self._fail(session, stop.seq, stop.ts_ns, f"decoder failure: {exc!r}", outputs)
                return
            if not session.failed:
                session.emit(stop.seq, stop.to_message(), outputs)

    async def _unseen_stop(self, partition: _Partition, offset: int, stop: SessionStop) -> _Session | None:
        """The session of a stop this consumer holds nothing of: after a restart or a rebalance the
        commit may have moved past a stateless session's chunks to its stop. Rebuilt from its
        resume point in the store, the stop still ends it (else the writer never finalized it).
        A stop of a session that ended already, or with no resume point, is ignored."""
        stored = await self._stored(stop.session_id)
        if stored.ended or stored.resume_offset is None or offset < stored.resume_offset:
            return None
        self._rebuilt(partition, offset, stored.audio_format(), stored)
        return partition.sessions.pop(stop.session_id)

    def _fail(self, session: _Session, seq: int, ts_ns: int, reason: str, outputs: _Outputs) -> None:
        session.failed, session.error = True, reason
        metrics.ERRORS.labels(session.codec).inc()
        log.warning("undecodable audio; session failed", extra={"codec": session.codec, "reason": reason})
        error = SessionError(session_id=session.session_id, seq=seq, ts_ns=ts_ns, reason=reason)
        session.emit(seq, error.to_message(), outputs)

    async def _save_progress(self, touched: dict[str, _Session]) -> None:
        """After the batch's output is durable: remember what was produced, per session, in one
        round trip for the batch (a write per session, awaited in turn, cost the transcoder more
        than decoding the audio)."""
        batch, queued = self._store.batch(), False
        for session in touched.values():
            produced = session.emitted_through > session.produced_through
            if produced:
                session.produced_through = session.emitted_through
            resumable = session.replay_frames > 0
            wav_format = None
            decoder = session.pipeline.decoder
            if isinstance(decoder, WavDecoder) and decoder.format and not session.wav_format_saved:
                wav_format = asdict(decoder.format)
                session.wav_format_saved = True
            progress = SessionUpdate(
                transcoded_seq=session.produced_through if produced else None,
                resume_offset=session.replay_from if resumable else None,
                resume_frames=session.replay_frames if resumable else None,
                resume_chunks=session.replay_chunks if resumable else None,
                wav_format=wav_format,
                status=SessionStatus.ERROR if session.failed else None,
                error=session.error if session.failed else None,
            )
            if progress.to_hash():  # nothing to write: no write
                self._hashes.queue_update(batch, session.session_id, progress)
                queued = True
        if queued:
            await batch.execute()

    def _update_gauge(self) -> None:
        metrics.SESSIONS.set(sum(len(p.sessions) for p in self._partitions.values()))


def _produced_through(stored: SessionState) -> int:
    return _NOTHING_PRODUCED if stored.transcoded_seq is None else stored.transcoded_seq


def _pcm_start(start: SessionStart, target: AudioFormat) -> SessionStart:
    return SessionStart(
        session_id=start.session_id,
        seq=start.seq,
        ts_ns=start.ts_ns,
        format=target,
        protocol=start.protocol,
        user_id=start.user_id,
        echo=start.echo,
        resume=start.resume,
    )
