"""A TCP proxy on loopback that a test can partition: what it forwards is held while the partition
lasts and delivered when it heals, as TCP's retransmissions deliver it across a network partition
that ends before the connection times out. Connections made meanwhile are accepted and held too
(on a real network their SYN would be retransmitted instead)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

_READ_BYTES = 64 * 1024


class PartitionableProxy:
    def __init__(self, port: int, target_host: str, target_port: int) -> None:
        self.port = port
        self._target = (target_host, target_port)
        self._healed = asyncio.Event()
        self._healed.set()
        self._server: asyncio.Server | None = None
        self._pumps: set[asyncio.Task[None]] = set()

    @property
    def partitioned(self) -> bool:
        return not self._healed.is_set()

    def partition(self) -> None:
        self._healed.clear()

    def heal(self) -> None:
        self._healed.set()

    async def _connection(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            target_in, target_out = await asyncio.open_connection(*self._target)
        except OSError:
            client_out.close()
            return
        for source, sink in ((client_in, target_out), (target_in, client_out)):
            pump = asyncio.create_task(self._pump(source, sink), name="proxy-pump")
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_READ_BYTES):
                await self._healed.wait()  # held while partitioned
                sink.write(data)
                await sink.drain()
        except ConnectionError:
            pass
        finally:
            sink.close()

    async def __aenter__(self) -> "PartitionableProxy":
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
        for pump in list(self._pumps):
            pump.cancel()
        for pump in list(self._pumps):
            with contextlib.suppress(asyncio.CancelledError):
                await pump
        if self._server is not None:
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def proxy(port: int, target: str) -> AsyncIterator[PartitionableProxy]:
    """A proxy from 127.0.0.1:`port` to `target` ("host:port") for the block."""
    host, target_port = target.rsplit(":", 1)
    async with PartitionableProxy(port, host, int(target_port)) as running:
        yield running
