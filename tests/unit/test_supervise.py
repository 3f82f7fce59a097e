"""Background work: restarts with backoff, `/health` when work stopped for good, event-loop lag."""

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voxbus.common.bus.memory import InProcessBus
from voxbus.common.runtime import ServiceSpec, Work, create_app, supervised
from voxbus.common.runtime.loop_lag import LoopLagMonitor
from voxbus.common.runtime.supervise import RestartPolicy, restarting
from voxbus.common.settings import Settings
from voxbus.common.store.memory import InProcessStore


def test_restart_backoff_doubles_up_to_the_cap() -> None:
    policy = RestartPolicy(backoff_seconds=0.5, backoff_max_seconds=30.0)
    assert [policy.backoff(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


class _Stop(BaseException):
    """Ends the supervised loop in a test (what cancellation does in a server)."""


async def test_crashed_work_restarts_after_a_backoff_and_progress_resets_it() -> None:
    work = Work("w", RestartPolicy(backoff_seconds=1.0, backoff_max_seconds=4.0, max_failures=3))
    script = ["crash", "crash", "crash", "crash", "progress-then-crash", "crash", "stop"]
    waits: list[float] = []
    health: list[str | None] = []

    async def run(work: Work) -> None:
        step = script.pop(0)
        if step == "stop":
            raise _Stop
        if step == "progress-then-crash":
            work.progressed()
        raise OSError(24, "Too many open files")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        health.append(work.failed())

    with pytest.raises(_Stop):
        await restarting(work, run, sleep=sleep, clock=lambda: 0.0)
    assert waits == [1.0, 2.0, 4.0, 4.0, 1.0, 2.0]
    assert health[:2] == [None, None]
    assert (
        health[2]
        == "crashed 3 times in a row without progress; last: OSError: [Errno 24] Too many open files"
    )
    assert health[3] is not None and health[3].startswith("crashed 4 times in a row")
    assert health[4:] == [None, None]  # progress: not stopped for good any more


def _dying_service() -> ServiceSpec:
    async def doomed() -> None:
        raise RuntimeError("the lease keeper lost its store")

    def setup(app: web.Application) -> None:
        async def context(app: web.Application) -> Any:
            task = supervised(app, "doomed", doomed())
            yield
            task.cancel()

        app.cleanup_ctx.append(context)

    return ServiceSpec(name="dying", setup=setup, description="a task that cannot restart dies")


async def test_health_is_503_once_a_task_that_cannot_restart_died() -> None:
    app = create_app(Settings(), [_dying_service()], bus=InProcessBus(), store=InProcessStore())
    async with TestClient(TestServer(app)) as client:
        await asyncio.sleep(0)  # the task runs (and dies) at its first step
        health = await client.get("/health")
        assert health.status == 503
        body = await health.json()
        assert body["status"] == "unhealthy"
        assert body["failed"] == {"doomed": "stopped: RuntimeError: the lease keeper lost its store"}
        assert (await client.get("/ready")).status == 503


def _crashing_service(crashes: int, ran: asyncio.Event) -> ServiceSpec:
    from voxbus.common.runtime import background  # noqa: PLC0415

    left = [crashes]

    async def run(app: web.Application, work: Work) -> None:
        if left[0]:
            left[0] -= 1
            raise OSError(24, "Too many open files")
        work.progressed()
        ran.set()
        await asyncio.Event().wait()

    def setup(app: web.Application) -> None:
        app.cleanup_ctx.append(background("crashy", run))

    return ServiceSpec(name="crashy", setup=setup, description="crashes, then works")


@pytest.mark.parametrize(("crashes", "status"), [(2, 200), (1000, 503)])
async def test_health_follows_background_work_that_restarts(crashes: int, status: int) -> None:
    settings = Settings(
        worker_restart_backoff_seconds=0.001, worker_restart_backoff_max_seconds=0.001, worker_max_failures=3
    )
    ran = asyncio.Event()
    app = create_app(settings, [_crashing_service(crashes, ran)], bus=InProcessBus(), store=InProcessStore())
    async with TestClient(TestServer(app)) as client:
        if status == 200:
            await asyncio.wait_for(ran.wait(), 10)
        else:
            for _ in range(1000):  # a few ms per restart cycle
                if (await client.get("/health")).status == 503:
                    break
                await asyncio.sleep(0.01)  # /health turns after restart cycles; nothing announces it
        health = await client.get("/health")
        assert health.status == status, await health.text()
        ready = await client.get("/ready")
        assert (ready.status == 200) == (status == 200), await ready.text()


async def test_loop_lag_is_how_late_the_monitor_woke() -> None:
    now = [100.0]
    late_by = iter([0.0, 0.003, 0.25])
    observed: list[float] = []

    async def sleep(seconds: float) -> None:
        now[0] += seconds + next(late_by)

    monitor = LoopLagMonitor(interval=0.5, clock=lambda: now[0], sleep=sleep, observe=observed.append)
    for _ in range(3):
        await monitor.tick()
    assert observed == pytest.approx([0.0, 0.003, 0.25])
