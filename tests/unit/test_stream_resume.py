"""`voxbus stream`'s resume bookkeeping: after a reconnect, the chunks it sends are exactly those
after the greeting's count, in order, whatever the client had already let go of."""

from collections.abc import Iterator

from voxbus.cli.stream.session import Counts, StreamSession, Target


class Numbered:
    """A file of `count` chunks, each naming its index; read from the start on every `chunks()`."""

    rate, channels, bytes_per_second = 16000, 1, 32000

    def __init__(self, count: int) -> None:
        self.count, self.reads = count, 0

    def chunks(self) -> Iterator[bytes]:
        self.reads += 1
        return (index.to_bytes(2, "big") for index in range(self.count))


def session(audio: Numbered) -> StreamSession:
    target = Target(url="ws://voxbus.test/api/ws/audio", api_key=None, user_id=None, realtime=False)
    return StreamSession(None, target, audio, Counts(total_seconds=None))  # type: ignore[arg-type]


def sent_after(stream: StreamSession, acked: int, *, on_the_wire: int, acked_seen: int) -> list[int]:
    """Take `on_the_wire` chunks, as sent, of which the first `acked_seen` were acknowledged;
    resume at `acked`: the indexes of every chunk the next socket sends."""
    for _ in range(on_the_wire):
        assert stream._take()
        index, chunk = stream._outbox.popleft()
        stream._unacked.append((index, chunk, 0.0))
    for _ in range(acked_seen):
        stream._unacked.popleft()
    stream._resume_at(acked)
    order = []
    while stream._outbox or stream._take():
        order.append(stream._outbox.popleft()[0])
    return order


def test_after_a_restart_the_chunks_after_the_count_go_again_then_the_rest() -> None:
    audio = Numbered(10)
    assert sent_after(session(audio), 4, on_the_wire=6, acked_seen=3) == [4, 5, 6, 7, 8, 9]
    assert audio.reads == 1


def test_a_count_below_what_was_let_go_of_reads_the_file_again() -> None:
    """A pod that died before saving its count greets with fewer chunks than the client saw
    acknowledged: the ones in between were once dropped from memory; they come from the file."""
    audio = Numbered(10)
    assert sent_after(session(audio), 2, on_the_wire=7, acked_seen=6) == [2, 3, 4, 5, 6, 7, 8, 9]
    assert audio.reads == 2


def test_resume_of_a_session_this_client_never_saw_skips_what_it_holds() -> None:
    audio = Numbered(10)
    assert sent_after(session(audio), 7, on_the_wire=0, acked_seen=0) == [7, 8, 9]
