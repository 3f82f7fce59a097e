"""Processes dying under load: kill -9 and restart of every service type, and SIGTERM drains of
ingest pods, while 20 sessions stream. Real Kafka and Redis, every service a process of its own;
each test ends with every acknowledged chunk in its recording exactly once, in order."""

from pathlib import Path

import aiohttp
import pytest

from tests.faults.driver import FaultRun, pod_name
from tests.faults.probes import echo_answers, telephony_answers
from tests.servers import cluster, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

SERVICES = ("transcoder", "writer", "echo", "telephony")
# a killed pod's connection slots and leases free themselves after this (the default is 15 s)
LEASE_SECONDS = "2"


@pytest.mark.timeout(240)
async def test_kill_9_and_restart_of_every_service_type_loses_and_doubles_nothing_acked(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    env = isolated_env(
        tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("kill"), LEASE_SECONDS=LEASE_SECONDS
    )
    run = FaultRun(tmp_path, seed=fault_seed, seconds=25.0)
    async with cluster(env, tmp_path, ingests=2, services=SERVICES) as processes:
        pods = [pod_name(process) for process in processes if process.name == "ingest"]
        plan = [("kill", run.rng.choice(pods)) for _ in range(2)]
        plan += [("kill", service) for service in SERVICES for _ in range(2)]
        faults = run.schedule(plan, between=(3.0, 18.0), hold=(0.3, 2.0))
        outcome = await run.stream(processes, faults)
        # echo and telephony are off the recording path: what shows they came back is their work
        async with aiohttp.ClientSession() as http:
            ingests = run.ingress.serving()
            for ingest in ingests:
                await echo_answers(http, ingest)
            await telephony_answers(http, run.processes["telephony"], ingests[0])
    outcome.check()
    assert len(outcome.injected) == len(faults), outcome.report("not every fault was injected")


@pytest.mark.timeout(180)
async def test_sigterm_drains_an_ingest_pod_with_1012_and_its_clients_resume_on_the_other(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("drain"))
    run = FaultRun(tmp_path, seed=fault_seed, seconds=20.0)
    async with cluster(env, tmp_path, ingests=2, services=("transcoder", "writer")) as processes:
        pods = [pod_name(process) for process in processes if process.name == "ingest"]
        faults = run.schedule([("term", pod) for pod in pods * 2], between=(2.0, 16.0), hold=(0.2, 1.0))
        outcome = await run.stream(processes, faults)
    outcome.check()
    assert len(outcome.injected) == len(faults), outcome.report("not every fault was injected")
    for injected in outcome.injected:
        assert injected.note.startswith("exit 0 "), outcome.report(f"a drain did not exit 0: {injected}")
    # every socket a drain ended was closed with 1012, and answered for every chunk it read: the
    # resume that followed counted exactly what that socket had acknowledged
    drained = 0
    for log, sock in outcome.sockets():
        draining = [
            injected
            for injected in outcome.injected
            if injected.fault.target == sock.pod
            and sock.ended is not None
            and injected.began <= sock.ended <= injected.ended
        ]
        if not draining or sock.final is not None:
            continue
        drained += 1
        assert (sock.close_code, sock.close_reason) == (1012, "server restarting"), outcome.report(
            f"session {log.index}: a socket ended by a drain closed otherwise: {sock.describe()}"
        )
        following = log.sockets[log.sockets.index(sock) + 1 :]
        resumed = next((later for later in following if later.greeting is not None), None)
        assert resumed is not None and resumed.pod != sock.pod, outcome.report(
            f"session {log.index} did not resume on another pod after {sock.describe()}"
        )
        assert resumed.greeting == sock.last_count(), outcome.report(
            f"session {log.index}: resumed at {resumed.greeting}, but the drained socket had "
            f"acknowledged {sock.last_count()}"
        )
    assert drained >= len(run.sessions), outcome.report(f"only {drained} sockets were drained")
