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
from voxbus.devinfra.processes import LocalProcess, spawn
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


class LocalKafka:
    """A broker on ports and a data folder of its own, which can be stopped and started again on
    the same ports with its data (a broker outage, for fault tests). `proxied_port`: the port a
    TCP proxy in front of the broker listens on; clients that connect there are told to come back
    there (`server_properties`'s PROXIED listener). The jars are fetched and the storage is
    formatted when it is made; `close()` stops it and removes its folder."""

    def __init__(self, *, proxied_port: int | None = None) -> None:
        self._java = _java()
        fetch_started = time.monotonic()
        self._libs = fetch_kafka_libs()
        self.fetch_seconds = time.monotonic() - fetch_started
        self.workdir = Path(tempfile.mkdtemp(prefix="voxbus-kafka-"))
        try:
            broker_port, controller_port, *listener = free_ports(2 if proxied_port is None else 3)
            self.bootstrap = f"{LOOPBACK}:{broker_port}"
            # where the proxy forwards to, and what the broker tells the clients behind it
            proxied = None if proxied_port is None else (listener[0], proxied_port)
            self.proxied_listener = None if proxied is None else f"{LOOPBACK}:{proxied[0]}"
            self.proxied_bootstrap = None if proxied is None else f"{LOOPBACK}:{proxied[1]}"
            self._properties = self.workdir / "server.properties"
            self._properties.write_text(
                server_properties(broker_port, controller_port, self.workdir / "data", proxied=proxied),
                encoding="utf-8",
            )
            _format_storage(self._java, self._libs, self._properties)
        except BaseException:
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        self._broker: LocalProcess | None = None

    def start(self) -> None:
        """Start the broker and wait until it answers (SourceFailed if it does not)."""
        if self._broker is not None and self._broker.popen.poll() is None:
            return
        broker = self._broker = spawn(
            f"Kafka {KAFKA_VERSION} broker",
            [
                *_java_prefix(self._java, self._libs, "INFO"),
                *HEAP_OPTIONS,
                "kafka.Kafka",
                str(self._properties),
            ],
            self.workdir,
            self.workdir / "broker.log",
        )
        port = int(self.bootstrap.rsplit(":", 1)[1])
        try:
            broker.wait_ready(
                lambda: accepts_tcp(LOOPBACK, port) and kafka_answers(self.bootstrap), KAFKA_START_TIMEOUT_S
            )
        except BaseException:
            broker.stop()
            raise

    def stop(self) -> None:
        """Stop the broker (SIGTERM: a clean shutdown), keeping its data for the next start."""
        if self._broker is not None:
            self._broker.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def local_kafka() -> Iterator[str]:
    """Fetch the jars if needed, format and start a broker, yield its bootstrap servers;
    stop it and remove its folder on exit."""
    started = time.monotonic()
    with LocalKafka() as kafka:
        kafka.start()
        logger.info(
            "Kafka %s ready at %s in %.2f s (format + start; jars ready in %.2f s)",
            KAFKA_VERSION,
            kafka.bootstrap,
            time.monotonic() - started - kafka.fetch_seconds,
            kafka.fetch_seconds,
        )
        yield kafka.bootstrap
