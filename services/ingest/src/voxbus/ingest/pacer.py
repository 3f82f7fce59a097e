"""Outbound audio to a telephony carrier, paced at real time: one `Pacer` per media socket.

A carrier plays what it is sent as it arrives and wants it in frames of one exact size (Vonage:
one 20 ms frame per message). Egress audio arrives in records of any size, at the echo's due
times or all at once (a prompt), so the pacer cuts it into frames and writes one per frame
period against a monotonic clock: the next send time is accumulated (`next += period`), never
re-read from "now + period", so the pacing does not drift. A socket has one pacer and the pacer
one task, whatever the number of frames.

- Live audio (an echo) comes with the time it is due, and ahead of it (the egress router hands
  a paced socket its records `Adapter.egress_lead` early): each frame goes out on the schedule,
  never before its slot, so frames the caller's network bunched leave one per period, and a
  frame that reached ingest late (but reaches the pacer before its slot) leaves on its slot.
  The schedule moves to a frame's due time when the frame is due more than `MAX_OFFSET_SECONDS`
  off its slot, later (the stream paused) or earlier (the caller's clock runs faster than ours),
  and at the first live frame after a prompt. When `OFFSET_FRAMES` frames in a row were due more
  than `OFFSET_SECONDS` off their slots on the same side (a steady offset: the frame the
  schedule started from reached ingest late, a stream resumed a little later, the grid a prompt
  left), the schedule moves by the smallest of their offsets: a frame's due time is the caller's
  send time plus whatever delayed it, so the frame least off is the best measure of the caller's
  clock. One frame that reached ingest late, with the frames after it on time, moves nothing: the
  caller sent it on time, so its slot is when its echo is due by the caller's clock. So an echo
  is on time to the pacer's wake-up, not to the bus's or the router's.
- Audio without a due time (a prompt) goes out on the schedule; when the pacer runs out of audio
  the schedule restarts at the next frame; when the task wakes late (a busy event loop) it
  catches up by sending at once, and if it is more than `MAX_BEHIND_SECONDS` late it restarts the
  schedule instead of bursting.
- Prompts (`EgressKind.PROMPT`, a greeting) take the line: live audio that arrives while a prompt
  is queued is dropped, so the echo that follows the prompt keeps its delay.
- A carrier that takes several frames per message (Exotel: 100 ms) gets, at each send, the
  frames queued up to `frames_per_message`, and the next send that many periods later.
- `clear()` drops everything queued (barge-in). `mark(callback)` runs `callback` once the audio
  queued before it has been sent (Exotel's and Twilio's marks).
- At most `max_queued_bytes` wait; past that the oldest frames are dropped and counted.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from voxbus.ingest import metrics

log = logging.getLogger(__name__)

MAX_BEHIND_SECONDS: Final = 0.1
MAX_OFFSET_SECONDS: Final = 0.06
OFFSET_SECONDS: Final = 0.002
OFFSET_FRAMES: Final = 5

Send = Callable[[bytes], Awaitable[None]]
Mark = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Frame:
    audio: bytes
    prompt: bool
    due: float | None  # on the pacer's clock; None: on the schedule


class Pacer:
    def __init__(
        self,
        *,
        protocol: str,
        frame_bytes: int,
        frame_seconds: float,
        send: Send,
        max_queued_bytes: int,
        frames_per_message: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if frame_bytes <= 0 or frame_seconds <= 0 or frames_per_message < 1:
            raise ValueError("a frame has a size and a duration, and a message at least one frame")
        self._per_message = frames_per_message
        self._frame_bytes, self._period, self._send = frame_bytes, frame_seconds, send
        self._max_frames = max(1, max_queued_bytes // frame_bytes)
        self._clock, self._sleep = clock, sleep
        self._queue: deque[_Frame | Mark] = deque()
        self._frames = 0  # audio frames in the queue (marks are not)
        self._prompt_frames = 0  # of which, prompt frames still to send
        self._prompt_partial = bytearray()  # a prompt's bytes short of a frame, until more come
        self._live_partial = bytearray()
        self._next: float | None = None  # when the next frame is due; None: restart at the next
        self._last_prompt = False  # the last frame sent was a prompt's
        # live frames in a row due more than OFFSET_SECONDS off their slots on one side, and the
        # offset of the one least off (seconds, + for due after its slot)
        self._offset_run, self._least_offset = 0, 0.0
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sent = metrics.PACED_FRAMES.labels(protocol)
        self._lateness = metrics.PACER_LATENESS.labels(protocol)
        self._dropped = {reason: metrics.PACER_DROPPED.labels(protocol, reason) for reason in _DROP_REASONS}

    @property
    def clock(self) -> float:
        """Now, on the clock due times are given on."""
        return self._clock()

    @property
    def queued_frames(self) -> int:
        return self._frames

    @property
    def prompting(self) -> bool:
        """A prompt is queued (or partly)."""
        return bool(self._prompt_frames or self._prompt_partial)

    def start(self, name: str) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=name)

    async def close(self) -> None:
        """Stop sending (the socket ended); what is queued is dropped."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def push(self, audio: bytes, *, prompt: bool = False, due: float | None = None) -> None:
        """Queue audio to send, `due` (on `clock`) when its first byte should go out; live audio
        while a prompt is queued is dropped."""
        if not prompt and self.prompting:
            self._dropped["prompt_playing"].inc(len(audio) // self._frame_bytes or 1)
            return
        partial = self._prompt_partial if prompt else self._live_partial
        size = self._frame_bytes
        if due is not None:  # the bytes held back from before go out first, that much earlier
            due -= len(partial) / size * self._period
        partial += audio
        whole = len(partial) - len(partial) % size
        if not whole:
            return
        for number, start in enumerate(range(0, whole, size)):
            frame_due = None if due is None else due + number * self._period
            self._queue.append(_Frame(bytes(partial[start : start + size]), prompt, frame_due))
        del partial[:whole]
        count = whole // size
        self._frames += count
        if prompt:
            self._prompt_frames += count
        while self._frames > self._max_frames:
            self._drop_oldest()
        self._ready.set()

    def mark(self, callback: Mark, *, after: float | None = None) -> None:
        """Run `callback` once every frame queued before it was sent (at once if none is); with
        `after` (on `clock`), before the queued frames due later than that (an echo's mark:
        after the echoes of the audio before it, which are queued by their due times)."""
        position = len(self._queue)
        if after is not None:
            while position:
                item = self._queue[position - 1]
                if not isinstance(item, _Frame) or item.due is None or item.due <= after:
                    break
                position -= 1
        self._queue.insert(position, callback)
        self._ready.set()

    def clear(self) -> int:
        """Drop all queued audio (marks stay, and run at once); the number of frames dropped."""
        dropped = self._frames
        self._queue = deque(item for item in self._queue if not isinstance(item, _Frame))
        self._frames = self._prompt_frames = 0
        self._prompt_partial.clear()
        self._live_partial.clear()
        if dropped:
            self._dropped["cleared"].inc(dropped)
        return dropped

    def _drop_oldest(self) -> None:
        for index, item in enumerate(self._queue):
            if isinstance(item, _Frame):
                del self._queue[index]
                self._taken(item)
                self._dropped["overflow"].inc()
                return

    def _taken(self, frame: _Frame) -> None:
        self._frames -= 1
        if frame.prompt:
            self._prompt_frames -= 1

    async def run(self) -> None:
        """Send frames on schedule until cancelled."""
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
            item = self._queue[0]
            if not isinstance(item, _Frame):  # a mark: due once what came before it was sent
                self._queue.popleft()
                await item()
                continue
            now = self._clock()
            self._next = self._when(item, now)
            if self._next > now:
                await self._sleep(self._next - now)
                if not self._queue or self._queue[0] is not item:  # cleared meanwhile
                    continue
            message = self._take_message(item)
            self._lateness.observe(max(0.0, self._clock() - self._next))
            try:
                await self._send(b"".join(frame.audio for frame in message))
            except ConnectionError:  # the carrier went away: the socket's end stops the pacer
                log.info("media socket gone: pacing stopped", extra={"queued": self._frames})
                return
            self._sent.inc(len(message))
            self._last_prompt = item.prompt
            self._next += self._period * len(message)
            if not self._queue and item.due is None:
                self._next = None  # out of scheduled audio: restart at the next frame

    def _take_message(self, head: _Frame) -> list[_Frame]:
        """`head` (the queue's first) and the frames queued after it, of its kind, up to a
        message's worth, out of the queue."""
        self._queue.popleft()
        message = [head]
        while len(message) < self._per_message and self._queue:
            following = self._queue[0]
            if not isinstance(following, _Frame) or following.prompt != head.prompt:
                break
            message.append(following)
            self._queue.popleft()
        for frame in message:
            self._taken(frame)
        return message

    def _when(self, frame: _Frame, now: float) -> float:
        """When `frame` goes out: on the schedule, unless the schedule has to move."""
        scheduled, due = self._next, frame.due
        if due is not None:
            if scheduled is None or self._last_prompt or abs(due - scheduled) > MAX_OFFSET_SECONDS:
                self._offset_run = 0
                return due
            return scheduled + self._steady_offset(due - scheduled)
        if scheduled is None or now - scheduled > MAX_BEHIND_SECONDS:
            return now
        return scheduled

    def _steady_offset(self, offset: float) -> float:
        """Count a live frame due `offset` seconds after its slot (before, if negative); how far
        the schedule moves now (0.0: it stays)."""
        if abs(offset) <= OFFSET_SECONDS:
            self._offset_run = 0
            return 0.0
        if self._offset_run and (offset > 0) == (self._least_offset > 0):
            self._offset_run += 1
            self._least_offset = min(offset, self._least_offset, key=abs)
        else:
            self._offset_run, self._least_offset = 1, offset
        if self._offset_run < OFFSET_FRAMES:
            return 0.0
        self._offset_run = 0
        return self._least_offset


_DROP_REASONS: Final = ("prompt_playing", "cleared", "overflow")
