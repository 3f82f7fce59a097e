"""Acks go out in chunk order once durable, one writer task for every socket, a backed-up
socket on its own."""

import asyncio
from typing import Any

from voxbus.ingest.acks import AckWriter, OnDurable


class _Transport(asyncio.WriteTransport):
    def __init__(self, buffered: int = 0) -> None:
        super().__init__()
        self.buffered = buffered

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (16_384, 65_536)


async def _running(writer: AckWriter) -> "asyncio.Task[None]":
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)  # one loop turn, not a wait: the writer task starts
    return task


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)  # loop turns, not a wait: the callbacks and tasks ready now run


async def test_acks_follow_chunk_order_whatever_order_deliveries_settle_in() -> None:
    writer, sent, acked = AckWriter(), list[tuple[int, bool]](), list[int]()
    task = await _running(writer)
    broken: list[bool] = []
    queue = writer.queue(_Transport(), acked.append, lambda: broken.append(True))
    loop = asyncio.get_running_loop()
    deliveries: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(4)]

    def on_durable(number: int) -> OnDurable:  # a closure per chunk, as adapters make
        async def acknowledge(ok: bool) -> None:
            sent.append((number, ok))

        return acknowledge

    for number, delivery in enumerate(deliveries, 1):
        await queue.add(delivery, 100 * number, on_durable(number))
    deliveries[2].set_result(None)
    deliveries[1].set_exception(RuntimeError("broker gone"))
    await _settle()
    assert sent == []  # chunk 1 is not durable yet: nothing after it may be acknowledged
    deliveries[0].set_result(None)
    await _settle()
    # chunk 3 is durable but behind one that is not: the transcoder takes a session's chunks in
    # unbroken order, so it is not in the recording, and the client must send it again
    assert sent == [(1, True), (2, False), (3, False)]
    assert acked == [100]  # only the unbroken run of durable chunks counts as received
    assert broken == [True]  # the socket is told once: it stops reading and the client resumes
    drained = asyncio.create_task(queue.drain())
    await _settle()
    assert not drained.done()
    deliveries[3].set_result(None)
    async with asyncio.timeout(1):
        await drained
    assert sent[-1] == (4, False)
    task.cancel()


async def test_a_backed_up_socket_does_not_hold_up_the_others() -> None:
    writer = AckWriter()
    task = await _running(writer)
    slow_transport, blocked = _Transport(buffered=60_000), asyncio.Event()
    slow, fast = (
        writer.queue(slow_transport, lambda _: None, lambda: None),
        writer.queue(_Transport(), lambda _: None, lambda: None),
    )
    fast_acks: list[bool] = []

    async def slow_ack(ok: bool) -> None:
        await blocked.wait()  # a socket whose client does not read

    async def fast_ack(ok: bool) -> None:
        fast_acks.append(ok)

    loop = asyncio.get_running_loop()
    slow_delivery, fast_delivery = loop.create_future(), loop.create_future()
    await slow.add(slow_delivery, 1, slow_ack)
    await fast.add(fast_delivery, 1, fast_ack)
    slow_delivery.set_result(None)
    await _settle()
    assert slow.busy  # flushed by a task of its own
    fast_delivery.set_result(None)
    await _settle()
    assert fast_acks == [True]
    blocked.set()
    await _settle()
    assert not slow.busy
    slow.close()
    await slow.drain()  # a closed queue has nothing left to wait for
    task.cancel()


async def test_a_socket_gone_counts_the_chunks_in_flight_that_turn_out_durable() -> None:
    """They are in the recording whether or not their acks reached the client; no ack is sent.
    Counted up to the first that is not: what follows it is not in the recording either."""
    writer, sent, counted = AckWriter(), list[bool](), list[int]()
    queue = writer.queue(_Transport(), counted.append, lambda: None)
    loop = asyncio.get_running_loop()
    deliveries: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(3)]

    async def acknowledge(ok: bool) -> None:
        sent.append(ok)

    for number, delivery in enumerate(deliveries, 1):
        await queue.add(delivery, 100 * number, acknowledge)
    abandoned = asyncio.create_task(queue.abandon(timeout=60))
    await _settle()
    assert not abandoned.done()
    deliveries[0].set_result(None)
    deliveries[1].set_exception(RuntimeError("broker gone"))
    deliveries[2].set_result(None)
    async with asyncio.timeout(1):
        assert await abandoned == 2
    assert (counted, sent) == ([100], [])


async def test_chunks_unsettled_when_the_wait_ends_are_reported_not_counted() -> None:
    writer, counted = AckWriter(), list[int]()
    queue = writer.queue(_Transport(), counted.append, lambda: None)
    loop = asyncio.get_running_loop()
    settled, stuck = loop.create_future(), loop.create_future()
    settled.set_result(None)

    async def acknowledge(ok: bool) -> None:
        return None

    await queue.add(settled, 100, acknowledge)
    await queue.add(stuck, 200, acknowledge)
    assert await queue.abandon(timeout=0) == 1
    assert counted == [100]


async def test_a_socket_holds_at_most_backlog_bytes_in_flight_before_its_reader_waits() -> None:
    # 1 MiB chunks on a slow bus: the reader stops reading once 4 MiB wait for the bus
    writer = AckWriter()
    task = await _running(writer)
    queue = writer.queue(_Transport(), lambda _: None, lambda: None)
    loop = asyncio.get_running_loop()
    deliveries: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(6)]
    acked: list[bool] = []

    async def acknowledge(ok: bool) -> None:
        acked.append(ok)

    mib = 1024 * 1024
    for delivery in deliveries[:4]:
        await queue.add(delivery, mib, acknowledge)
    fifth = asyncio.create_task(queue.add(deliveries[4], mib, acknowledge))
    await _settle()
    assert not fifth.done()  # 4 MiB in flight: the reader waits
    deliveries[0].set_result(None)
    async with asyncio.timeout(1):
        await fifth  # one settled and acknowledged: room again
    assert acked == [True]
    task.cancel()


async def test_a_reader_waiting_for_room_goes_on_when_writing_acks_fails() -> None:
    # 256 chunks wait for their acks and the reader waits for room; the socket breaks as the acks
    # are written. The reader must go on (to see the broken socket and release the session,
    # which else stays held and unresumable), and the chunks still count as they are durable
    writer, counted = AckWriter(), list[int]()
    task = await _running(writer)
    queue = writer.queue(_Transport(), counted.append, lambda: None)
    loop = asyncio.get_running_loop()

    async def broken_socket(ok: bool) -> None:
        raise ConnectionResetError("Cannot write to closing transport")

    deliveries: list[asyncio.Future[Any]] = [loop.create_future() for _ in range(257)]
    for delivery in deliveries[:256]:
        await queue.add(delivery, 10, broken_socket)
    reader = asyncio.create_task(queue.add(deliveries[256], 10, broken_socket))
    await _settle()
    assert not reader.done()  # no room: 256 chunks wait
    for delivery in deliveries:
        delivery.set_result(None)
    async with asyncio.timeout(1):
        await reader
    await _settle()
    assert len(counted) == 257  # every durable chunk counts, though no ack could be written
    task.cancel()
