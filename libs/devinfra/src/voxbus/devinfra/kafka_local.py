"""A throw-away local Apache Kafka: one KRaft node run with `java` from the Maven-fetched jars."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.kafka_config import random_cluster_id, server_properties
from voxbus.devinfra.kafka_fetch import KAFKA_VERSION, fetch_kafka_libs
from voxbus.devinfra.ports import LOOPBACK, accepts_tcp, free_ports
from voxbus.devinfra.probes import kafka_answers
from voxbus.devinfra.processes import spawn
from voxbus.devinfra.resources import kafka_resource

logger = logging.getLogger(__name__)

KAFKA_START_TIMEOUT_S = 120.0
FORMAT_TIMEOUT_S = 120.0
HEAP_OPTIONS = ("-Xms256m", "-Xmx768m")
# StorageTool runs for a second: C1 only and the serial GC halve its time (3.5 s -> 1.8 s)
ONE_SHOT_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
_OUTPUT_TAIL_CHARS = 3000


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise SourceFailed("`java` (17 or newer) is not on PATH and JAVA_HOME is not set")
    return found


def _java_prefix(java: str, libs: Path, log_level: str) -> list[str]:
    return [
        java,
        f"-Dlog4j2.configurationFile={kafka_resource('log4j2.properties')}",
        f"-Dvoxbus.kafka.loglevel={log_level}",
        "-cp",
        f"{libs}/*",
    ]


def _format_storage(java: str, libs: Path, properties: Path) -> None:
    command = [
        *_java_prefix(java, libs, "WARN"),
        *ONE_SHOT_JVM_OPTIONS,
        "kafka.tools.StorageTool",
        "format",
        "-t",
        random_cluster_id(),
        "-c",
        str(properties),
    ]
    try:
        result = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=FORMAT_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceFailed(f"Kafka StorageTool format took over {FORMAT_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-_OUTPUT_TAIL_CHARS:]
        raise SourceFailed(f"Kafka StorageTool format exited with {result.returncode}:\n{output}")


@contextlib.contextmanager
def local_kafka() -> Iterator[str]:
    """Fetch the jars if needed, format and start a broker, yield its bootstrap servers;
    stop it and remove its folder on exit."""
    java = _java()
    fetch_started = time.monotonic()
    libs = fetch_kafka_libs()
    fetch_s = time.monotonic() - fetch_started
    workdir = Path(tempfile.mkdtemp(prefix="voxbus-kafka-"))
    try:
        broker_port, controller_port = free_ports(2)
        bootstrap = f"{LOOPBACK}:{broker_port}"
        properties = workdir / "server.properties"
        properties.write_text(
            server_properties(broker_port, controller_port, workdir / "data"), encoding="utf-8"
        )
        started = time.monotonic()
        _format_storage(java, libs, properties)
        broker = spawn(
            f"Kafka {KAFKA_VERSION} broker",
            [*_java_prefix(java, libs, "INFO"), *HEAP_OPTIONS, "kafka.Kafka", str(properties)],
            workdir,
            workdir / "broker.log",
        )
        try:
            broker.wait_ready(
                lambda: accepts_tcp(LOOPBACK, broker_port) and kafka_answers(bootstrap),
                KAFKA_START_TIMEOUT_S,
            )
            logger.info(
                "Kafka %s ready at %s in %.2f s (format + start; jars ready in %.2f s)",
                KAFKA_VERSION,
                bootstrap,
                time.monotonic() - started,
                fetch_s,
            )
            yield bootstrap
        finally:
            broker.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
