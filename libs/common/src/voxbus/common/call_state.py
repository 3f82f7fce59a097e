"""Call records (docs/protocols/vonage.md, call records): one per carrier call, in the state
store, written by whichever telephony instance a webhook or event reaches. Like the session hash
(`session_state`), the storage contract is spelled here alone; the telephony service uses it.

The record is a hash (`Key.CALL` + call id) with the call's parties, mode, latest status and
session; its status history and DTMF digits are sorted sets scored by time, so two instances
adding to one call at once never overwrite each other, and a webhook the carrier sends again adds
nothing. Indexes list calls newest first, all or by provider. A call's recording is its session's:
read from the session record when the call is read.
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from voxbus.common.call_events import CallDtmf, CallMedia
from voxbus.common.constants import Key
from voxbus.common.http_bodies import CallRecord, CallRecording, DtmfPress
from voxbus.common.listing import Page, newest_first
from voxbus.common.session_state import SessionHashes
from voxbus.common.store.base import ScoreRange, StateStore

MAX_STATUSES: Final = 100  # a call's status history keeps this many (a carrier sends about ten)
MAX_DTMF: Final = 1000  # digits a call record keeps
PARTIES: Final = ("from", "to", "direction", "conversation_id")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStart:
    """What the first webhook of a call says about it."""

    call_id: str
    provider: str
    parties: dict[str, str]  # PARTIES present in the webhook
    mode: str | None = None


class CallRecords:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self._sessions = SessionHashes(store)

    async def seen(self, start: CallStart) -> None:
        """A webhook about the call: create its record if it is new, fill in what it adds."""
        key = Key.CALL + start.call_id
        now = time.time()
        fields: dict[str, str | float] = {"updated_at": now}
        fields.update(start.parties)
        if start.mode is not None:
            fields["mode"] = start.mode
        batch = self._store.batch()
        if await self._store.hget(key, "created_at") is None:
            fields.update(call_id=start.call_id, provider=start.provider, created_at=now)
            batch.zadd(Key.CALLS_ALL, {start.call_id: now})
            batch.zadd(Key.CALLS_BY_PROVIDER + start.provider, {start.call_id: now})
        batch.hset(key, fields)
        await batch.execute()

    async def status(
        self, start: CallStart, status: str, carrier_time: str | None, *, latest: bool = True
    ) -> None:
        """The carrier reported `status`: one more line of history (a webhook sent again, with the
        same carrier timestamp, adds none; past `MAX_STATUSES` none), and the call's status
        unless the carrier timestamped a later one already (webhooks retried, or answered by
        two instances, arrive out of order; Vonage's ISO-8601 times sort as text). Not `latest`:
        history only (a step of the call, such as Exotel's passthru, that is no call status)."""
        await self.seen(start)
        key, now = Key.CALL + start.call_id, time.time()
        entry = json.dumps({"status": status, "carrier_time": carrier_time or str(now)}, sort_keys=True)
        batch = self._store.batch()
        history = Key.CALL_HISTORY + start.call_id
        if await self._store.zcount(history, ScoreRange()) < MAX_STATUSES:
            batch.zadd(history, {entry: now})
        current = await self._store.hget(key, "status_time") if latest else None
        if latest and (carrier_time is None or current is None or carrier_time >= current):
            batch.hset(key, {"status": status, "status_time": carrier_time or "", "updated_at": now})
        await batch.execute()

    async def media(self, event: CallMedia) -> None:
        """The call's media socket opened its session."""
        await self.seen(
            CallStart(call_id=event.call_id, provider=event.provider, parties={}, mode=event.mode)
        )
        fields: dict[str, str | int | float] = {
            "session_id": event.session_id,
            "sample_rate": event.rate,
            "updated_at": time.time(),
        }
        await self._store.hset(Key.CALL + event.call_id, fields)

    async def stream(self, call_id: str, info: dict[str, str]) -> None:
        """What the carrier reported about the call's media stream (Exotel's passthru)."""
        await self._store.hset(Key.CALL + call_id, {"stream": json.dumps(info, sort_keys=True)})

    async def dtmf(self, event: CallDtmf) -> None:
        entry = json.dumps(
            {"digit": event.digit, "duration_ms": event.duration_ms, "at": event.at}, sort_keys=True
        )
        digits = Key.CALL_DTMF + event.call_id
        if await self._store.zcount(digits, ScoreRange()) < MAX_DTMF:
            await self._store.zadd(digits, {entry: event.at})

    async def read(self, call_id: str) -> CallRecord | None:
        """The call as the API shows it; None if no webhook or event ever named it."""
        fields = await self._store.hgetall(Key.CALL + call_id)
        if "created_at" not in fields:
            return None
        history = await self._store.zrange(Key.CALL_HISTORY + call_id)
        digits = await self._store.zrange(Key.CALL_DTMF + call_id)
        session_id = fields.get("session_id")
        session = await self._sessions.read(session_id) if session_id else None
        presses = [DtmfPress.model_validate_json(entry) for entry, _ in digits]
        return CallRecord.model_validate(
            {
                "call_id": call_id,
                "provider": fields.get("provider"),
                "from": fields.get("from"),
                "to": fields.get("to"),
                "direction": fields.get("direction"),
                "conversation_id": fields.get("conversation_id"),
                "mode": fields.get("mode"),
                "status": fields.get("status"),
                "created_at": float(fields["created_at"]),
                "updated_at": float(fields.get("updated_at", fields["created_at"])),
                "statuses": [{**_status(entry), "at": at} for entry, at in history],
                "dtmf": "".join(press.digit for press in presses),
                "dtmf_presses": presses,
                "session_id": session_id,
                "sample_rate": int(fields["sample_rate"]) if "sample_rate" in fields else None,
                "stream": json.loads(fields["stream"]) if "stream" in fields else None,
                "recording": None
                if session is None or not session.record  # an `echo` call keeps no audio
                else CallRecording(
                    status=session.status,
                    file_path=session.file_path,
                    duration_seconds=session.duration_seconds,
                    segments=list(session.segments),
                ),
            }
        )

    async def list(
        self, *, provider: str | None, status: str | None, page: Page
    ) -> tuple[list[CallRecord], float | None]:
        """Newest first, a page at a time (`listing.newest_first`), all or one carrier's."""
        index = Key.CALLS_BY_PROVIDER + provider if provider else Key.CALLS_ALL

        async def read(call_ids: Sequence[str]) -> list[CallRecord | None]:
            # the page's hashes in one round trip; whole records (history, digits, session) only
            # for the calls the filter keeps
            batch = self._store.batch()
            for call_id in call_ids:
                batch.hgetall(Key.CALL + call_id)
            kept = [
                "created_at" in fields and (not status or fields.get("status") == status)
                for fields in await batch.execute()
            ]
            return [
                await self.read(call_id) if keep else None
                for call_id, keep in zip(call_ids, kept, strict=True)
            ]

        return await newest_first(self._store, index, page, read)


def _status(entry: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(entry)
    return body
