"""What voxbus stands on failing under load: the Kafka broker stopped for 10 s, Redis stopped for
10 s, one ingest pod cut off from the broker for 10 s. 20 sessions stream through each; each test
ends with every acknowledged chunk in its recording exactly once, in order.

The partition is a TCP proxy on loopback between that pod and the broker: the pod bootstraps
through it, and the broker's PROXIED listener advertises the proxy's port to whoever comes in that
way, so every connection the pod makes to the broker stays behind the proxy (an ordinary
listener would send it straight to the broker's own port after the first metadata answer)."""

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.driver import Fault, FaultRun, Outcome
from tests.faults.proxy import proxy
from tests.servers import Process, cluster, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.kafka_local import LocalKafka
from voxbus.devinfra.provide import REDIS_HOW_TO
from voxbus.devinfra.redis_local import LocalRedis

OUTAGE_SECONDS = 10.0
SECONDS = 20.0  # of audio each session streams
# a close waits for the writer, which may be in its restart backoff after the outage (16 s after
# five crashes in a row); CLOSE_TIMEOUT_SECONDS (30 s) is what a close waited for a lost notice
CLOSE_WAIT_SECONDS = 20.0


async def _ready(process: Process) -> tuple[int, dict[str, Any]]:
    """What `/ready` answers (status, body)."""
    async with aiohttp.ClientSession() as http, http.get(f"{process.url}/ready") as response:
        body: dict[str, Any] = await response.json()
        return response.status, body


async def _hold_asking_ready(process: Process, hold: float) -> tuple[int, dict[str, Any]]:
    """Hold a fault for `hold` s, asking `process`'s `/ready` halfway through: what it answers."""
    await asyncio.sleep(hold / 2)  # the fault lasts
    asking = asyncio.create_task(_ready(process), name="ready-halfway")
    await asyncio.sleep(hold / 2)
    return await asking


def _acks_between(outcome: Outcome, start: float, end: float) -> int:
    return sum(start <= at <= end for _, sock in outcome.sockets() for at in sock.acked_at)


@pytest.mark.timeout(180)
async def test_the_broker_stopped_for_10_s_holds_the_acks_until_it_is_back_and_loses_nothing(
    tmp_path: Path, own_kafka: LocalKafka, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    kafka = KafkaEndpoint(bootstrap_servers=own_kafka.bootstrap, source="local")
    env = isolated_env(tmp_path, kafka, redis_endpoint, topic_prefix("broker"))
    run = FaultRun(tmp_path, seed=fault_seed, seconds=SECONDS)
    said: list[tuple[int, dict[str, Any]]] = []
    outage: list[float] = []

    async def stop_the_broker(fault: Fault) -> str:
        await asyncio.to_thread(own_kafka.stop)
        outage.append(run.clock())
        said.append(await _hold_asking_ready(run.ingress.serving()[0], fault.hold))
        outage.append(run.clock())
        await asyncio.to_thread(own_kafka.start)
        outage.append(run.clock())
        return f"down {outage[1] - outage[0]:.1f}s, answering {outage[2] - outage[1]:.1f}s after its start"

    async with cluster(env, tmp_path, ingests=2, services=("transcoder", "writer")) as processes:
        faults = run.schedule([("stop", "broker")], between=(3.0, 6.0), hold=(OUTAGE_SECONDS, OUTAGE_SECONDS))
        outcome = await run.stream(processes, faults, injectors={"stop": stop_the_broker})
    outcome.check()
    # ingest says why it is not ready while the broker is away
    status, body = said[0]
    assert status == 503 and "unreachable" in body["checks"]["bus"], outcome.report(f"/ready said {body}")
    # the producer held what it was given (its request timeout, 40 s, is longer than the outage):
    # no ack came while the broker was down, none was refused, and the acks came again after
    stopped, started, answering = outage
    held = _acks_between(outcome, stopped + 1.0, started)
    assert held == 0, outcome.report(f"{held} acks while the broker was down")
    assert _acks_between(outcome, answering, answering + 10.0), outcome.report("no acks after the restart")
    refused = [sock.describe() for _, sock in outcome.sockets() if sock.failed]
    assert not refused, outcome.report(f"chunks refused: {refused}")


@pytest.mark.timeout(180)
async def test_redis_stopped_for_10_s_is_waited_out_with_clear_errors_and_loses_nothing(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, fault_seed: int
) -> None:
    try:
        own_redis = LocalRedis(persistent=True)  # a production Redis keeps its data over a restart
        await asyncio.to_thread(own_redis.start)
    except SourceFailed as exc:
        pytest.fail(f"the Redis fault test needs a local redis-server of its own: {REDIS_HOW_TO}.\n{exc}")
    redis = RedisEndpoint(url=own_redis.url, source="local")
    env = isolated_env(tmp_path, kafka_endpoint, redis, topic_prefix("redis"))
    run = FaultRun(tmp_path, seed=fault_seed, seconds=SECONDS)
    said: list[tuple[int, dict[str, Any]]] = []
    outage: list[float] = []

    async def stop_redis(fault: Fault) -> str:
        await asyncio.to_thread(own_redis.stop)
        outage.append(run.clock())
        said.append(await _hold_asking_ready(run.ingress.serving()[0], fault.hold))
        outage.append(run.clock())
        await asyncio.to_thread(own_redis.start)
        return f"down {outage[1] - outage[0]:.1f}s"

    try:
        async with cluster(env, tmp_path, ingests=2, services=("transcoder", "writer")) as processes:
            faults = run.schedule(
                [("stop", "redis")], between=(3.0, 6.0), hold=(OUTAGE_SECONDS, OUTAGE_SECONDS)
            )
            outcome = await run.stream(processes, faults, injectors={"stop": stop_redis})
    finally:
        await asyncio.to_thread(own_redis.close)
    outcome.check()
    status, body = said[0]
    assert status == 503 and "Redis" in body["checks"]["store"], outcome.report(f"/ready said {body}")
    # an ack needs the bus, not the store: the sessions streaming were acked all through
    assert _acks_between(outcome, outage[0] + 1.0, outage[1]), outcome.report("no acks while Redis was down")
    # once Redis is back, closes are answered when the files are complete: every notice reaches
    # its waiter again (before the fix in store/redis.py each close waited CLOSE_TIMEOUT_SECONDS)
    for log, sock in outcome.sockets():
        if sock.final_at is not None and sock.acked_at:
            waited = sock.final_at - sock.acked_at[-1]
            assert waited < CLOSE_WAIT_SECONDS, outcome.report(
                f"session {log.index}'s close took {waited:.1f}s"
            )


@pytest.mark.timeout(180)
async def test_an_ingest_pod_cut_off_from_the_broker_for_10_s_holds_its_acks_and_loses_nothing(
    tmp_path: Path, own_kafka: LocalKafka, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    kafka = KafkaEndpoint(bootstrap_servers=own_kafka.bootstrap, source="local")
    env = isolated_env(tmp_path, kafka, redis_endpoint, topic_prefix("partition"))
    if own_kafka.proxied_bootstrap is None or own_kafka.proxied_listener is None:
        raise AssertionError("the fault tests' broker has no listener for a proxy")
    behind = Process("ingest", {**env, "KAFKA_BOOTSTRAP_SERVERS": own_kafka.proxied_bootstrap}, tmp_path)
    run = FaultRun(tmp_path, seed=fault_seed, seconds=SECONDS)
    said: list[tuple[int, dict[str, Any]]] = []
    partition: list[float] = []

    async def cut_off(fault: Fault) -> str:
        """No byte between the pod and the broker for `hold` s; the pod is out of the ingress
        meanwhile, as a load balancer reading its /ready would take it out."""
        run.ingress.take_out(behind)
        link.partition()
        partition.append(run.clock())
        said.append(await _hold_asking_ready(behind, fault.hold))
        link.heal()
        partition.append(run.clock())
        await behind.ready()
        run.ingress.put_back(behind)
        return f"healed after {partition[1] - partition[0]:.1f}s"

    port = int(own_kafka.proxied_bootstrap.rsplit(":", 1)[1])
    async with proxy(port, own_kafka.proxied_listener) as link:
        behind.start()
        try:
            async with cluster(env, tmp_path, ingests=1, services=("transcoder", "writer")) as processes:
                await behind.ready()
                faults = run.schedule(
                    [("partition", "ingest")], between=(3.0, 6.0), hold=(OUTAGE_SECONDS, OUTAGE_SECONDS)
                )
                outcome = await run.stream([behind, *processes], faults, injectors={"partition": cut_off})
        finally:
            behind.stop()
    outcome.check()
    status, body = said[0]
    assert status == 503 and body["checks"]["bus"] != "ok", outcome.report(f"/ready said {body}")
    # the pod's producer held its chunks (its request timeout, 40 s, is longer than the partition):
    # none was acked while it was cut off, none refused, and its sessions went on after
    cut, healed = partition
    pod = f"ingest-{behind.port}"
    held = sum(
        cut + 1.0 <= at <= healed for _, sock in outcome.sockets() if sock.pod == pod for at in sock.acked_at
    )
    assert held == 0, outcome.report(f"{held} acks from the cut-off pod during the partition")
    refused = [sock.describe() for _, sock in outcome.sockets() if sock.failed]
    assert not refused, outcome.report(f"chunks refused: {refused}")
    assert any(at > healed for _, sock in outcome.sockets() if sock.pod == pod for at in sock.acked_at), (
        outcome.report("no session of the cut-off pod was acked after the partition")
    )
