"""Fetch the Apache Kafka broker jars with Maven into a reused cache folder.

The shipped `kafka/pom.xml` lists the broker, Kafka's command-line tools (kafka-tools: the
benchmarks run its EndToEndLatency and ProducerPerformance) and a logging binding; `mvn
dependency:copy-dependencies` copies them (and everything they need) into
`<cache>/kafka/<version>/libs`. A marker holding the pom's hash is written last, so an
interrupted copy, or a changed pom, is fetched again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.paths import cache_dir
from voxbus.devinfra.resources import kafka_resource

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.2.0"
MAVEN_TIMEOUT_S = 900.0
_MARKER = "complete.marker"
# the jars a complete fetch holds, besides what they need: the broker's and the tools'
_EXPECTED_JARS = (f"kafka_2.13-{KAFKA_VERSION}.jar", f"kafka-tools-{KAFKA_VERSION}.jar")
_OUTPUT_TAIL_CHARS = 3000


def kafka_cache_dir() -> Path:
    """`<cache>/kafka/<version>`: the pom's copy target and its marker."""
    return cache_dir() / "kafka" / KAFKA_VERSION


def _pom_digest(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def cached_kafka_libs() -> Path | None:
    """The jar folder if a complete fetch of the current pom is cached, else None."""
    folder = kafka_cache_dir()
    libs = folder / "libs"
    try:
        fetched = (folder / _MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    complete = fetched == _pom_digest(kafka_resource("pom.xml")) and all(
        (libs / jar).is_file() for jar in _EXPECTED_JARS
    )
    return libs if complete else None


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder`, so parallel test workers fetch only once."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_maven(mvn: str, pom: Path, target: Path) -> None:
    command = [
        mvn,
        "-q",
        "-B",
        "-Dstyle.color=never",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={target}",
    ]
    try:
        result = subprocess.run(
            command,
            cwd=target.parent,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=MAVEN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SourceFailed(f"Maven did not finish within {MAVEN_TIMEOUT_S:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-_OUTPUT_TAIL_CHARS:]
        raise SourceFailed(
            f"`{' '.join(command)}` exited with {result.returncode}; its output ends with:\n{output}"
        )


def fetch_kafka_libs() -> Path:
    """Return the folder of the broker jars, running Maven only if the cache is not complete."""
    cached = cached_kafka_libs()
    if cached is not None:
        return cached
    mvn = shutil.which("mvn")
    if mvn is None:
        raise SourceFailed("`mvn` (Maven) is not on PATH, so the Kafka broker jars can't be fetched")
    folder = kafka_cache_dir()
    with _locked(folder):
        cached = cached_kafka_libs()  # another process may have fetched while we waited
        if cached is not None:
            return cached
        pom = kafka_resource("pom.xml")
        partial = folder / "libs.partial"
        libs = folder / "libs"
        shutil.rmtree(partial, ignore_errors=True)
        logger.info("fetching Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
        started = time.monotonic()
        _run_maven(mvn, pom, partial)
        shutil.rmtree(libs, ignore_errors=True)
        partial.rename(libs)
        (folder / _MARKER).write_text(_pom_digest(pom) + "\n", encoding="utf-8")
        jars = sum(1 for _ in libs.glob("*.jar"))
        logger.info("fetched %d jars in %.1f s", jars, time.monotonic() - started)
        return libs


def kafka_tools_classpath() -> str:
    """The `java -cp` argument that runs Kafka's own tools (`org.apache.kafka.tools.EndToEndLatency`,
    `org.apache.kafka.tools.ProducerPerformance`, ...): the fetched jars, fetched first if needed."""
    return f"{fetch_kafka_libs()}/*"
