"""`/ws` and the Wyoming TCP port: audio from wearables (Omi-style devices and their phone apps).

Wyoming's audio events (voxbus.common.wyoming_events) bracket each session: `audio-start` opens
one (its format from the event's data, else the connect query), `audio-chunk` events carry its
audio, `audio-stop` finalizes it, and the next `audio-start` on the same connection opens the
next. A binary message with no header before it is a raw packet of the query's codec (Opus by
default): devices that never send an event stream just those, and the first one opens a session.
A dropped connection leaves its session resumable (`audio-start` with its `session_id`), and the
idle reaper finalizes it when nobody resumes.

Bad input is refused message by message, with a Wyoming `error` event and a count in
`voxbus_ingest_rejected_messages_total`; the session, and the audio it accepted, go on.
Over TCP (`WyomingTcpAdapter`) the key, when one is configured, comes in `audio-start` data.
"""

import logging
from typing import ClassVar, Final

from voxbus.common.client_messages import (
    ClientMessage,
    ErrorReply,
    InvalidApiKey,
    InvalidWearableParameter,
    MessageError,
    SessionNotFound,
)
from voxbus.common.records import EchoSettings
from voxbus.common.wyoming_events import (
    PCM_WIDTH,
    AudioChunkData,
    AudioChunkHeader,
    AudioData,
    AudioStartData,
    EventHeader,
    EventType,
    Pong,
    PongData,
    Rejection,
    SessionStarted,
    SessionStartedData,
    SessionStopped,
    SessionStoppedData,
    WyomingError,
)
from voxbus.ingest import metrics
from voxbus.ingest.opus_packets import OpusPacketCheck
from voxbus.ingest.protocols.base import Adapter, Connection, Opening, SessionRefused, auth_refusal
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.sessions import SessionSpec, canonical_session_id
from voxbus.ingest.wearable_format import BARE, Options, WearableFormat, format_of

log = logging.getLogger(__name__)

BLE_HEADER_BYTES: Final = 3  # packet id (lo, hi) and sub-index, before some SDKs' Opus packets
_LOGGED_REJECTIONS: Final = 10  # per connection; then one line per 1000, with the count
TCP_PROTOCOL: Final = "wyoming-tcp"  # the TCP port's `protocol` (sessions, metrics)
_STOPPED_BY_CLIENT: Final = "audio-stop"
_NEXT_START: Final = "audio-start"  # a new audio-start while a session was open


class WyomingAdapter(Adapter):
    protocol = "wyoming"
    rejections = tuple(Rejection)
    default_codec: ClassVar[str] = "opus"  # what the wearables' bare packets are

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self._options = Options()
        self._format: WearableFormat | None = None  # the open session's
        self._pending: EventHeader | None = None  # an audio-chunk header waiting for its payload
        self._discard_payload = False  # the next binary message is a refused event's payload
        self._start_refused = False  # audio waits for the next audio-start
        self._closing = False  # a close request from outside is answered: the socket closes
        self._opus = OpusPacketCheck()
        self._rejections = 0

    @property
    def authenticated(self) -> bool:
        """The connection presented a valid key (or none is configured)."""
        return self.principal is not None

    async def on_open(self, conn: Connection) -> bool:
        options = Options.of(self.opening.query, self.default_codec)
        if options is None:
            raise SessionRefused(InvalidWearableParameter(), 1008)
        self._options = options
        return True  # a session opens at audio-start, or at the first packet

    # -- events --------------------------------------------------------------------------------

    async def on_text(self, conn: Connection, text: str) -> None:
        if self._closing:
            await self._while_closing(conn, text)
            return
        self._discard_payload = False  # a payload refused by its header did not come
        await self._payload_missing(conn)
        try:
            header = EventHeader.parse(parse_json(text))
        except InvalidJson as exc:
            await self._reject(conn, Rejection.INVALID_JSON, f"not JSON: {exc}")
            return
        except MessageError as exc:
            await self._reject(conn, Rejection.INVALID_EVENT, f"not a Wyoming event: {exc}")
            return
        if self.principal is None and header.type != EventType.AUDIO_START:
            raise SessionRefused(InvalidApiKey(), 1008)  # TCP: the key comes first, in audio-start
        if header.type == EventType.AUDIO_CHUNK:
            await self._chunk_header(conn, header)
            return
        self._discard_payload = header.payload_size > 0  # not audio: its payload is not ours
        if header.type == EventType.AUDIO_START:
            await self._start(conn, header)
        elif header.type == EventType.AUDIO_STOP:
            await self._stop(conn, _STOPPED_BY_CLIENT)
        elif header.type == EventType.PING:
            await self._pong(conn, header)
        else:
            await self._reject(conn, Rejection.UNKNOWN_EVENT, f"unknown event type {header.type!r}")

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        if self._closing:
            return
        if self._discard_payload:
            self._discard_payload = False
            return
        if self.principal is None:
            raise SessionRefused(InvalidApiKey(), 1008)
        header, self._pending = self._pending, None
        try:
            chunk = BARE if header is None else AudioData.parse(header.fields)
        except MessageError as exc:
            await self._reject(conn, Rejection.INVALID_EVENT, f"audio-chunk data: {exc}")
            return
        await self._audio(conn, chunk, data)

    async def _while_closing(self, conn: Connection, text: str) -> None:
        """A close from outside is answered and the socket closes: no audio is taken and no
        session opens now; a ping is still answered."""
        try:
            header = EventHeader.parse(parse_json(text))
        except (InvalidJson, MessageError):
            return
        if header.type == EventType.PING:
            await self._pong(conn, header)

    async def _pong(self, conn: Connection, header: EventHeader) -> None:
        text = header.fields.get("text")
        await conn.send(Pong(data=PongData(text=text if isinstance(text, str) else None)))

    async def _payload_missing(self, conn: Connection) -> None:
        if self._pending is not None:
            self._pending = None
            await self._reject(conn, Rejection.PAYLOAD_MISSING, "an audio-chunk's payload did not follow it")

    async def _chunk_header(self, conn: Connection, header: EventHeader) -> None:
        size, limit = header.payload_size, conn.chunk_limit
        if size == 0:
            await self._reject(conn, Rejection.EMPTY_PAYLOAD, "an audio-chunk without a payload")
        elif size > limit:
            self._discard_payload = True
            await self._reject(
                conn, Rejection.PAYLOAD_TOO_LARGE, f"payload_length {size} is over the limit of {limit} bytes"
            )
        else:
            self._pending = header

    # -- sessions ------------------------------------------------------------------------------

    async def _start(self, conn: Connection, header: EventHeader) -> None:
        if self._format is not None:  # the next session begins: this one ends as audio-stop would
            await self._stop(conn, _NEXT_START)
            if conn.finished:
                return
        self._start_refused = True  # until this one succeeds
        try:
            start = AudioStartData.parse(header.fields)
        except MessageError as exc:
            await self._reject(conn, Rejection.INVALID_EVENT, f"audio-start data: {exc}")
            return
        if self.principal is None:
            principal = await conn.authenticate(start.token)
            refusal = auth_refusal(principal)
            if refusal is not None:
                raise SessionRefused(refusal, 1008)
            self.principal = principal
        fmt, problem = format_of(start, self._options)
        if fmt is None:
            await self._reject(conn, Rejection.INVALID_FORMAT, problem)
            return
        try:
            if start.session_id is None:
                await self._open(conn, fmt, start.user_id)
                resumed = False
            else:
                await self._resume(conn, fmt, start.session_id)
                resumed = True
        except SessionRefused as refused:
            await self._refuse(conn, WyomingError.from_reply(refused.reply))
            return
        if self._format is None:
            return  # refused (said above)
        self._start_refused = False
        await self._started(conn, resumed=resumed)

    async def _open(self, conn: Connection, fmt: WearableFormat, user_id: str | None) -> None:
        spec = SessionSpec(
            user_id=user_id or self._options.user_id,
            protocol=self.protocol,
            format=fmt.record_format(),
            echo=EchoSettings(enabled=False, delay_ms=0),
        )
        await conn.open(spec)
        self._format = fmt

    async def _resume(self, conn: Connection, fmt: WearableFormat, given: str) -> None:
        session_id = canonical_session_id(given)
        if session_id is None:
            raise SessionRefused(SessionNotFound(session_id=given), 1008)
        await conn.resume(session_id)
        stored = conn.session_format
        ours = WearableFormat.of_record(stored) if stored is not None else None
        if ours != fmt:
            await conn.end_session()  # still resumable, in its own format
            await self._reject(
                conn,
                Rejection.FORMAT_MISMATCH,
                f"session {session_id} was started as {ours}; this audio-start says {fmt}",
            )
            return
        self._format = fmt

    async def _started(self, conn: Connection, *, resumed: bool) -> None:
        session_id = conn.session_id or ""
        log.info("wearable session started", extra={"resumed": resumed, "chunk_count": conn.chunk_count})
        data = SessionStartedData(session_id=session_id, chunk_count=conn.chunk_count, resumed=resumed)
        await conn.send(SessionStarted(data=data))

    async def _stop(self, conn: Connection, reason: str) -> None:
        if self._format is None:
            await self._reject(conn, Rejection.NO_SESSION, f"{reason} with no session open")
            return
        self._format = None
        if conn.finished or not await conn.ignore_close_requests():
            return  # closed from outside: that answer ends the session and the socket
        await self._finish(conn, reason)
        await conn.end_session()

    async def _finish(self, conn: Connection, reason: str) -> None:
        session_id = conn.session_id or ""
        await conn.finish(reason, wait=False)  # every chunk durable first: chunk_count is final
        data = SessionStoppedData(session_id=session_id, chunk_count=conn.chunk_count, reason=reason)
        await conn.send(SessionStopped(data=data))

    # -- audio ---------------------------------------------------------------------------------

    async def _audio(self, conn: Connection, chunk: AudioData, data: bytes) -> None:
        if conn.finished:
            return  # closed from outside: the socket closes
        fmt = self._format or await self._implicit_format(conn, chunk)
        if fmt is None:
            return
        mismatch = fmt.mismatch(chunk)
        if mismatch is not None:
            await self._reject(conn, Rejection.FORMAT_MISMATCH, mismatch)
            return
        if fmt.codec == "opus" and self._options.strip_header and len(data) > BLE_HEADER_BYTES:
            data = data[BLE_HEADER_BYTES:]
        if not data:
            await self._reject(conn, Rejection.EMPTY_PAYLOAD, "an empty audio message")
            return
        if fmt.codec == "opus":
            problem = self._opus.problem(data)
            if problem is not None:
                await self._reject(conn, Rejection.INVALID_OPUS, f"libopus refuses the packet: {problem}")
                return
        if self._format is None:  # the first packet of a stream with no audio-start
            await self._open(conn, fmt, None)
            await self._started(conn, resumed=False)
        await conn.audio(data, _no_ack)

    async def _implicit_format(self, conn: Connection, chunk: AudioData) -> WearableFormat | None:
        """The format of the session a packet with no session open opens (None: refused)."""
        if self._start_refused:
            await self._reject(conn, Rejection.NO_SESSION, "audio after a refused audio-start")
            return None
        fmt, problem = format_of(chunk, self._options)
        if fmt is None:
            await self._reject(conn, Rejection.INVALID_FORMAT, problem)
        return fmt

    # -- the driver's hooks --------------------------------------------------------------------

    async def on_timeout(self, conn: Connection, reason: str) -> None:
        if self._format is not None:
            await self._stop(conn, reason)
        await conn.close(1000, reason)

    async def on_close_request(self, conn: Connection, reason: str) -> None:
        if conn.finished:
            return
        self._closing = True  # the reader drops what comes now: no session opens over this one
        self._format = None
        await self._finish(conn, reason)
        await conn.close(1000, reason)

    async def on_too_large(self, conn: Connection, reply: ErrorReply, data: str | bytes) -> None:
        if self._closing:
            return
        if isinstance(data, bytes):
            if self._discard_payload:  # the payload its header announced, refused already
                self._discard_payload = False
                return
            self._pending = None  # this was its payload
        else:
            await self._payload_missing(conn)
            self._discard_payload = _announces_payload(data)  # never taken for a bare packet
        await self._refuse(conn, WyomingError.from_reply(reply))

    def render(self, message: ClientMessage) -> str:
        if isinstance(message, ErrorReply):
            return WyomingError.from_reply(message).to_wire()
        return message.to_wire()

    def egress(self, audio: bytes) -> list[str | bytes]:
        fmt = self._format
        if fmt is None:
            return []
        data = AudioChunkData(rate=fmt.rate, width=PCM_WIDTH, channels=fmt.channels)
        return [AudioChunkHeader(data=data, payload_length=len(audio)).to_wire(), audio]

    async def _reject(self, conn: Connection, code: Rejection, text: str) -> None:
        await self._refuse(conn, WyomingError.of(code, text))

    async def _refuse(self, conn: Connection, error: WyomingError) -> None:
        """Count, log (the first few, then every thousandth) and answer a refused message."""
        code = error.data.code
        metrics.REJECTED.labels(self.protocol, code).inc()
        self._rejections += 1
        count = self._rejections
        if count <= _LOGGED_REJECTIONS or count % 1000 == 0:
            log.info("message rejected", extra={"code": code, "reason": error.data.text, "count": count})
        await conn.send(error)


class WyomingTcpAdapter(WyomingAdapter):
    """Wyoming over the TCP port: the same events, framed by `voxbus.ingest.wyoming_framing`."""

    protocol = TCP_PROTOCOL
    default_codec = "pcm"  # Wyoming's own audio-chunk: PCM unless `data.format` says opus

    def closing_message(self, code: int, reason: str) -> ClientMessage | None:
        # no close frame: an error event says why, unless a session-stopped said it (1000)
        return None if code == 1000 else WyomingError.closing(code, reason)

    def egress(self, audio: bytes) -> list[str | bytes]:
        # one write, header line and payload: no other event can land between them
        parts = super().egress(audio)
        if not parts:
            return []
        return [b"".join(part.encode() + b"\n" if isinstance(part, str) else part for part in parts)]


def _announces_payload(text: str) -> bool:
    """Whether a header (one refused as too large) announces a payload."""
    try:
        return EventHeader.parse(parse_json(text)).payload_size > 0
    except (InvalidJson, MessageError):
        return False


async def _no_ack(ok: bool) -> None:
    return None  # Wyoming has no acks: the resume's chunk_count says what the recording holds
