"""Kafka (apache/kafka 4.x, KRaft) and Redis 7 in Docker containers, via testcontainers.

testcontainers' own KafkaContainer drives Confluent images only (it edits
/etc/confluent/docker scripts and refuses tags below 7.0.0), so the apache/kafka image is
run as a generic container, the way testcontainers-java's KafkaContainer does: the
container waits for a start script that carries the advertised listener, which is only
known once Docker has mapped the port.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tarfile
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.kafka_config import random_cluster_id
from voxbus.devinfra.probes import kafka_answers, redis_answers

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

logger = logging.getLogger(__name__)

KAFKA_IMAGE_ENV = "VOXBUS_KAFKA_IMAGE"
KAFKA_IMAGE = "apache/kafka:4.2.0"
REDIS_IMAGE_ENV = "VOXBUS_REDIS_IMAGE"
REDIS_IMAGE = "redis:7"
READY_TIMEOUT_S = 120.0

_KAFKA_PORT = 9092
_REDIS_PORT = 6379
_START_SCRIPT = "/tmp/voxbus_start.sh"
_START_FLAG = "/tmp/voxbus_start.ready"
_LOG_TAIL_CHARS = 3000


def _kafka_environment() -> dict[str, str]:
    return {
        "CLUSTER_ID": random_cluster_id(),
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": ("PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_NUM_PARTITIONS": "1",
        "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "true",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }


def _put_files(container: DockerContainer, files: dict[str, str]) -> None:
    """Copy text files into the container in one archive, in the given order."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        for path, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name=path.lstrip("/"))
            info.size = len(data)
            info.mode = 0o755
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    container.get_wrapped_container().put_archive("/", archive.getvalue())


def _logs_tail(container: DockerContainer) -> str:
    try:
        stdout, stderr = container.get_logs()
    except Exception as exc:  # the docker SDK raises many kinds
        return f"(no logs: {exc})"
    return (stdout + stderr).decode("utf-8", errors="replace")[-_LOG_TAIL_CHARS:]


def _wait_ready(container: DockerContainer, what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not probe():
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        if wrapped.status in ("exited", "dead"):
            raise SourceFailed(f"the {what} container stopped; its log ends with:\n{_logs_tail(container)}")
        if time.monotonic() >= deadline:
            raise SourceFailed(
                f"the {what} container was not ready within "
                f"{READY_TIMEOUT_S:.0f} s; its log ends with:\n{_logs_tail(container)}"
            )
        time.sleep(0.5)


@contextlib.contextmanager
def kafka_container() -> Iterator[str]:
    """Run apache/kafka (KRaft, one node), yield its bootstrap servers, remove it on exit."""
    # testcontainers takes ~0.4 s to import: load it only where Docker is used
    from testcontainers.core.container import DockerContainer  # noqa: PLC0415

    image = os.environ.get(KAFKA_IMAGE_ENV, KAFKA_IMAGE)
    container = DockerContainer(image).with_exposed_ports(_KAFKA_PORT)
    for key, value in _kafka_environment().items():
        container.with_env(key, value)
    container.with_command(
        f'sh -c "while [ ! -f {_START_FLAG} ]; do sleep 0.1; done; exec sh {_START_SCRIPT}"'
    )
    started = time.monotonic()
    container.start()
    try:
        bootstrap = f"{container.get_container_host_ip()}:{container.get_exposed_port(_KAFKA_PORT)}"
        script = (
            f"export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://{bootstrap},BROKER://localhost:9093\n"
            "exec /etc/kafka/docker/run\n"
        )
        # the flag comes after the script in the archive, so the script is whole when seen
        _put_files(container, {_START_SCRIPT: script, _START_FLAG: ""})
        _wait_ready(container, image, lambda: kafka_answers(bootstrap))
        logger.info("Kafka container %s ready at %s in %.2f s", image, bootstrap, time.monotonic() - started)
        yield bootstrap
    finally:
        container.stop()


@contextlib.contextmanager
def redis_container() -> Iterator[str]:
    """Run redis:7, yield its URL, remove it on exit."""
    try:
        from testcontainers.community.redis import RedisContainer  # noqa: PLC0415
    except ImportError:  # testcontainers before the `community` layout
        from testcontainers.redis import (  # type: ignore[no-redef,unused-ignore]  # noqa: PLC0415
            RedisContainer,
        )

    image = os.environ.get(REDIS_IMAGE_ENV, REDIS_IMAGE)
    container = RedisContainer(image, port=_REDIS_PORT)
    started = time.monotonic()
    container.start()
    try:
        url = f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(_REDIS_PORT)}/0"
        _wait_ready(container, image, lambda: redis_answers(url))
        logger.info("Redis container %s ready at %s in %.2f s", image, url, time.monotonic() - started)
        yield url
    finally:
        container.stop()
