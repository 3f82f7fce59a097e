"""The media sockets' pacer, on an injected clock: exact frames, an accumulated schedule (no
drift), a restart after running dry, prompts ahead of live audio, clear, marks and the bound."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from voxbus.ingest.pacer import MAX_BEHIND_SECONDS, Pacer

FRAME = 640
PERIOD = 0.02


class Line:
    """The carrier's side: what was sent, when, on a clock that moves only when the pacer sleeps
    (or a send takes time, `stall`)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sent: list[tuple[float, bytes]] = []
        self.stall: dict[int, float] = {}  # send number → seconds that send takes
        self.wrote = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)

    async def send(self, frame: bytes) -> None:
        self.sent.append((self.now, frame))
        self.now += self.stall.get(len(self.sent), 0.0)
        self.wrote.set()

    async def until_sent(self, count: int) -> None:
        async with asyncio.timeout(2):
            while len(self.sent) < count:
                self.wrote.clear()
                await self.wrote.wait()

    def times(self) -> list[float]:
        return [round(at - 1000.0, 6) for at, _ in self.sent]


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    yield Line()


def make_pacer(line: Line, *, max_queued_bytes: int = 100 * FRAME) -> Pacer:
    pacer = Pacer(
        protocol="test",
        frame_bytes=FRAME,
        frame_seconds=PERIOD,
        send=line.send,
        max_queued_bytes=max_queued_bytes,
        clock=line.clock,
        sleep=line.sleep,
    )
    pacer.start("test-pacer")
    return pacer


def frames(count: int, first: int = 0) -> list[bytes]:
    return [bytes([(first + number) % 256]) * FRAME for number in range(count)]


async def sent_at(line: Line, dues: list[float]) -> list[float]:
    """Live frames handed over at once, due at `dues` (seconds from 1000.0): when each was sent."""
    pacer = make_pacer(line)
    for frame, due in zip(frames(len(dues)), dues, strict=True):
        pacer.push(frame, due=1000.0 + due)
    await line.until_sent(len(dues))
    await pacer.close()
    return line.times()


async def test_audio_of_any_size_goes_out_in_exact_frames_on_an_accumulated_schedule(line: Line) -> None:
    pacer = make_pacer(line)
    audio = b"".join(frames(50))
    for start in range(0, len(audio), 999):  # records that cut frames anywhere
        pacer.push(audio[start : start + 999])
    await line.until_sent(50)
    await pacer.close()
    assert [frame for _, frame in line.sent] == frames(50)
    assert line.times() == [round(number * PERIOD, 6) for number in range(50)]


async def test_a_slow_send_is_caught_up_and_a_long_stall_restarts_the_schedule(line: Line) -> None:
    line.stall = {3: 0.03, 8: MAX_BEHIND_SECONDS + 0.05}
    pacer = make_pacer(line)
    pacer.push(b"".join(frames(12)))
    await line.until_sent(12)
    await pacer.close()
    # frame 4 is 10 ms late and goes at once, frame 5 is back on the grid; after the long stall
    # frame 9 goes at once and the grid starts again from there (no burst of the backlog)
    assert line.times() == [0.0, 0.02, 0.04, 0.07, 0.08, 0.1, 0.12, 0.14, 0.29, 0.31, 0.33, 0.35]


async def test_after_running_dry_the_schedule_restarts_at_the_next_audio(line: Line) -> None:
    pacer = make_pacer(line)
    pacer.push(b"".join(frames(2)))
    await line.until_sent(2)
    line.now += 0.5  # nothing to send for half a second
    pacer.push(b"".join(frames(2, first=2)))
    await line.until_sent(4)
    await pacer.close()
    assert line.times() == [0.0, 0.02, 0.52, 0.54]


async def test_a_prompt_takes_the_line_and_live_audio_during_it_is_dropped(line: Line) -> None:
    pacer = make_pacer(line)
    prompt, live = frames(3, first=100), frames(2, first=200)
    pacer.push(b"".join(prompt), prompt=True)
    pacer.push(live[0])  # arrives while the prompt plays: dropped
    assert pacer.prompting
    await line.until_sent(3)
    await asyncio.sleep(0)
    assert not pacer.prompting
    pacer.push(live[1])
    await line.until_sent(4)
    await pacer.close()
    assert [frame for _, frame in line.sent] == [*prompt, live[1]]


async def test_clear_drops_what_is_queued_and_marks_run_after_the_audio_before_them(line: Line) -> None:
    pacer = make_pacer(line)
    marks: list[tuple[str, int]] = []

    def mark(name: str) -> Callable[[], Awaitable[None]]:
        async def reached() -> None:
            marks.append((name, len(line.sent)))

        return reached

    pacer.push(b"".join(frames(3)))
    pacer.mark(mark("after three"))
    pacer.push(b"".join(frames(10, first=3)))
    pacer.mark(mark("after the cleared audio"))
    await line.until_sent(4)
    assert pacer.clear() == 9
    pacer.push(frames(1, first=50)[0])
    await line.until_sent(5)
    await pacer.close()
    assert [frame for _, frame in line.sent] == [*frames(4), frames(1, first=50)[0]]
    assert marks == [("after three", 3), ("after the cleared audio", 4)]


async def test_past_its_bound_the_oldest_queued_frames_are_dropped(line: Line) -> None:
    pacer = make_pacer(line, max_queued_bytes=4 * FRAME)
    pacer.push(b"".join(frames(10)))
    assert pacer.queued_frames == 4
    await line.until_sent(4)
    await pacer.close()
    assert [frame for _, frame in line.sent] == frames(10)[6:]


async def test_live_audio_goes_out_at_its_due_time_on_one_schedule(line: Line) -> None:
    pacer = make_pacer(line)
    live = frames(6)
    # handed over early, with due times: 1 ms of arrival jitter stays on the schedule, a due time
    # 80 ms off it (the caller's stream paused) moves the schedule there
    dues = [0.1, 0.121, 0.14, 0.16, 0.26, 0.28]
    for frame, due in zip(live, dues, strict=True):
        pacer.push(frame, due=1000.0 + due)
    await line.until_sent(6)
    await pacer.close()
    assert line.times() == [0.1, 0.12, 0.14, 0.16, 0.26, 0.28]


async def test_live_audio_handed_over_late_is_sent_at_once_to_catch_up(line: Line) -> None:
    pacer = make_pacer(line)
    pacer.push(frames(1)[0], due=1000.0)
    await line.until_sent(1)
    line.now += 0.05  # the next three were due meanwhile (a stall before they were handed over)
    for number, frame in enumerate(frames(3, first=1), start=1):
        pacer.push(frame, due=1000.0 + number * PERIOD)
    pacer.push(frames(1, first=4)[0], due=1000.0 + 4 * PERIOD)
    await line.until_sent(5)
    await pacer.close()
    assert line.times() == [0.0, 0.05, 0.05, 0.06, 0.08]


async def test_a_socket_that_went_away_stops_the_pacer_quietly(line: Line) -> None:
    tried = asyncio.Event()

    async def gone(frame: bytes) -> None:
        tried.set()
        raise ConnectionResetError("Cannot write to closing transport")

    pacer = Pacer(
        protocol="test", frame_bytes=FRAME, frame_seconds=PERIOD, send=gone, max_queued_bytes=10 * FRAME
    )
    pacer.start("test-pacer")
    pacer.push(b"".join(frames(3)))
    async with asyncio.timeout(2):
        await tried.wait()
    await pacer.close()  # nothing raised: the socket's end is not an error of the pacer's
    assert pacer.queued_frames == 2


async def test_frames_the_callers_network_bunched_still_leave_one_per_period(line: Line) -> None:
    pacer = make_pacer(line)
    # pairs: two frames received together every 40 ms, so each pair's echoes are due together
    for number, frame in enumerate(frames(8)):
        pacer.push(frame, due=1000.0 + 0.04 * (number // 2))
    await line.until_sent(8)
    await pacer.close()
    assert line.times() == [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.14]


@pytest.mark.parametrize(
    ("offset", "sent"),
    [
        # the stream's clock moved: every frame due 15 ms before its slot
        (-0.015, [0.0, 0.02, 0.04, 0.06, 0.08, 0.085, 0.105, 0.125]),
        # the stream resumed a little later: every frame due 15 ms after its slot
        (0.015, [0.0, 0.02, 0.04, 0.06, 0.08, 0.115, 0.135, 0.155]),
    ],
)
async def test_a_steady_offset_from_the_due_times_is_corrected_after_a_few_frames(
    line: Line, offset: float, sent: list[float]
) -> None:
    pacer = make_pacer(line)
    pacer.push(frames(1)[0], due=1000.0)
    await line.until_sent(1)
    for number, frame in enumerate(frames(7, first=1), start=1):
        pacer.push(frame, due=1000.0 + number * PERIOD + offset)
    await line.until_sent(8)
    await pacer.close()
    # 15 ms off is within what bunching or one late frame looks like, for OFFSET_FRAMES frames;
    # then the schedule moves by it
    assert line.times() == sent


async def test_the_first_live_frame_after_a_prompt_goes_at_its_own_due_time(line: Line) -> None:
    pacer = make_pacer(line)
    pacer.push(b"".join(frames(2, first=100)), prompt=True)
    await line.until_sent(2)
    await asyncio.sleep(0)
    pacer.push(frames(1)[0], due=1000.0 + 0.047)  # on no grid of the prompt's
    pacer.push(frames(1, first=1)[0], due=1000.0 + 0.067)
    await line.until_sent(4)
    await pacer.close()
    assert line.times() == [0.0, 0.02, 0.047, 0.067]


async def test_a_frame_that_reached_ingest_late_still_leaves_on_its_slot(line: Line) -> None:
    # the third frame came in 15 ms late (so is due 15 ms late), the rest on time: handed over
    # early, all of them leave one per period, the late one within a frame of its due time
    assert await sent_at(line, [0.1, 0.12, 0.155, 0.16, 0.18, 0.2]) == [0.1, 0.12, 0.14, 0.16, 0.18, 0.2]


async def test_one_frame_30_ms_late_leaves_on_its_slot_and_the_frames_after_it_keep_theirs(
    line: Line,
) -> None:
    """A CI run's caller sent one frame 30 ms late: the schedule moved to it, and the next five
    echoes (on time) left 30 ms late, until the early ones moved it back."""
    assert await sent_at(line, [0.1, 0.12, 0.17, 0.16, 0.18, 0.2, 0.22, 0.24]) == [
        0.1,
        0.12,
        0.14,
        0.16,
        0.18,
        0.2,
        0.22,
        0.24,
    ]


async def test_a_schedule_started_from_a_late_frame_moves_to_the_callers_clock(line: Line) -> None:
    """The first echo after a greeting starts the schedule at its due time. When that frame had
    reached ingest 6 ms late, every echo after it left 6 ms late (a CI run's cluster test: median
    error 6.0 ms), as 6 ms was within what counted as on time."""
    # the frames after the first are due 5-7 ms before their slots: the schedule moves by the
    # smallest of those offsets once OFFSET_FRAMES of them came in a row
    assert await sent_at(line, [0.106, 0.12, 0.1405, 0.16, 0.181, 0.2, 0.22, 0.24]) == [
        0.106,
        0.126,
        0.146,
        0.166,
        0.186,
        0.201,
        0.221,
        0.241,
    ]


async def test_several_frames_per_message_go_together_on_a_schedule_of_as_many_periods(line: Line) -> None:
    pacer = Pacer(
        protocol="test",
        frame_bytes=FRAME,
        frame_seconds=PERIOD,
        send=line.send,
        max_queued_bytes=100 * FRAME,
        frames_per_message=5,
        clock=line.clock,
        sleep=line.sleep,
    )
    pacer.start("test-pacer")
    audio = frames(12)
    pacer.push(b"".join(audio))
    await line.until_sent(3)
    await pacer.close()
    # 5 frames every 100 ms, and what is left when fewer are queued
    assert [len(message) for _, message in line.sent] == [5 * FRAME, 5 * FRAME, 2 * FRAME]
    assert b"".join(message for _, message in line.sent) == b"".join(audio)
    assert line.times() == [0.0, 0.1, 0.2]


async def test_a_mark_with_a_time_goes_after_the_frames_due_by_then(line: Line) -> None:
    pacer = make_pacer(line)
    reached: list[int] = []

    async def mark() -> None:
        reached.append(len(line.sent))

    for number, frame in enumerate(frames(5)):
        pacer.push(frame, due=1000.0 + number * PERIOD)
    pacer.mark(mark, after=1000.0 + 2 * PERIOD)  # after the frame due at 40 ms, before the rest
    await line.until_sent(5)
    await pacer.close()
    assert reached == [3]
