"""`python -m voxbus.devinfra kafka|redis|both|fetch|stack|generate`: run the infrastructure by hand.

`kafka`, `redis` and `both` provide the services as the tests do, write env-var lines
(`KAFKA_BOOTSTRAP_SERVERS=...`, `REDIS_URL=...`) to stdout and keep them up until SIGINT or
SIGTERM. `fetch` only fetches the Kafka broker jars (CI runs it up front). `stack up|down|status`
runs voxbus as a cluster on this machine (`voxbus.devinfra.stack`; `voxbus stack` is the same).
`generate` writes the deployment files made from code into the checkout: the Grafana dashboards
(`voxbus.devinfra.dashboards`) and the Prometheus Operator's PrometheusRule, from
`deploy/prometheus/rules.yml` (`voxbus.devinfra.prometheus_rule`).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from voxbus.devinfra import dashboards, prometheus_rule, stack
from voxbus.devinfra.errors import InfraUnavailable, SourceFailed
from voxbus.devinfra.kafka_fetch import fetch_kafka_libs
from voxbus.devinfra.paths import find_repo_root
from voxbus.devinfra.provide import KAFKA_ENV, REDIS_ENV, provide_kafka, provide_redis

logger = logging.getLogger("voxbus.devinfra")


def _wait_for_stop_signal() -> int:
    """Block until SIGINT or SIGTERM; return the signal's number."""
    received: list[int] = []
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, on_signal)
    while not stop.wait(1.0):
        pass
    return received[0]


def _serve(kafka: bool, redis: bool) -> int:
    with contextlib.ExitStack() as stack:
        lines: list[str] = []
        if kafka:
            endpoint = stack.enter_context(provide_kafka())
            logger.info("Kafka (%s) at %s", endpoint.source, endpoint.bootstrap_servers)
            lines.append(f"{KAFKA_ENV}={endpoint.bootstrap_servers}")
        if redis:
            redis_endpoint = stack.enter_context(provide_redis())
            logger.info("Redis (%s) at %s", redis_endpoint.source, redis_endpoint.url)
            lines.append(f"{REDIS_ENV}={redis_endpoint.url}")
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
        logger.info("running; stop with Ctrl-C or SIGTERM")
        signum = _wait_for_stop_signal()
        logger.info("got %s; stopping", signal.Signals(signum).name)
    return 0


def _fetch() -> int:
    started = time.monotonic()
    libs = fetch_kafka_libs()
    logger.info("Kafka broker jars ready in %s (%.1f s)", libs, time.monotonic() - started)
    return 0


def _generate() -> int:
    root = find_repo_root(Path(__file__).resolve().parent)
    if root is None:
        logger.error("not in a checkout of voxbus: the files are written into its deploy/ folder")
        return 1
    for path in [*dashboards.write(root / dashboards.DIRECTORY), prometheus_rule.write(root)]:
        logger.info("wrote %s", path)
    return 0


def _stack(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="voxbus stack", description=stack.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(".cache/stack"),
        help="state, logs and recordings (default: .cache/stack)",
    )
    parser.add_argument("--port", type=int, default=8000, help="the load balancer's port (default 8000)")
    parser.add_argument("--prometheus-port", type=int, default=9090, help="Prometheus's port (default 9090)")
    args = parser.parse_args(argv)
    try:
        if args.action == "up":
            logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
            started = stack.up(args.dir, port=args.port, prometheus_port=args.prometheus_port)
            sys.stdout.write(
                f"voxbus stack is up ({started.directory}):\n"
                f"  {started.url}  voxbus behind HAProxy "
                f"({stack.INGESTS} ingest, {stack.TELEPHONIES} telephony)\n"
                f"  {started.url}/test  the test page;  {started.url}/docs  the API\n"
                f"  {started.prometheus_url}  Prometheus\n"
                f"  logs: {started.directory}/logs/   recordings: {started.directory}/audio/\n"
                "  stop it: voxbus stack down\n"
            )
        elif args.action == "down":
            stopped = stack.down(args.dir)
            sys.stdout.write(f"stopped: {', '.join(stopped)}\n" if stopped else "nothing was running\n")
        else:
            rows = stack.status(args.dir)
            sys.stdout.write("".join(f"{name:<14} {pid:>8}  {state}\n" for name, pid, state in rows))
            return 0 if all(state == "ready" for _, _, state in rows) else 1
    except stack.StackError as exc:
        sys.stderr.write(f"voxbus stack: {exc}\n")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m voxbus.devinfra`; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["stack"]:
        return _stack(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m voxbus.devinfra",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("what", choices=("kafka", "redis", "both", "fetch", "stack", "generate"))
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.what == "fetch":
            return _fetch()
        if args.what == "generate":
            return _generate()
        return _serve(kafka=args.what in ("kafka", "both"), redis=args.what in ("redis", "both"))
    except (InfraUnavailable, SourceFailed) as exc:
        logger.error("%s", exc)
        return 1
