"""`voxbus`: run every service in one process (`up`) or one service alone (`serve SERVICE`);
`echo-client` talks to a running voxbus."""

import argparse
import importlib
import importlib.util
import logging
import subprocess
import sys
from collections.abc import Callable, Sequence

from voxbus.cli import echo_client, records
from voxbus.cli.stream import command as stream
from voxbus.common.bus import BusError
from voxbus.common.constants import SERVICE_NAMES
from voxbus.common.runtime import ServiceSpec, configure_logging, create_app, serve
from voxbus.common.settings import SettingsError, load_settings
from voxbus.common.store import StoreError

log = logging.getLogger("voxbus")

DESCRIPTION = """\
voxbus: real-time audio over WebSocket that scales out.

  voxbus up              all services in one process on PORT (default 8000). With neither
                         KAFKA_BOOTSTRAP_SERVERS nor REDIS_URL set it needs nothing else:
                         the bus and the state store are in-process. Set them to use Kafka/Redis.
  voxbus serve SERVICE   one service alone (ingest, transcoder, writer, echo, telephony), for a
                         deployment where each runs in its own pods over Kafka and Redis.
  voxbus echo-client URL stream a WAV file or the microphone to /ws/echo; report the echo delay.
  voxbus stream FILE     stream an audio file (WAV, FLAC, MP3, Ogg) to a recording session, with
                         progress; --fast, --resume SESSION_ID; resumes by itself after a 1012.
  voxbus sessions list|show ID|download ID
                         recorded sessions of a running voxbus (--url, --api-key).
  voxbus calls list|show ID
                         its telephony call records.
  voxbus stack up|down|status
                         (in a checkout) a cluster on this machine: Kafka, Redis, 2 ingest and
                         2 telephony behind HAProxy, transcoder, writer, echo, Prometheus.

Configuration comes from the environment and a .env file in the working directory
(see README.md, "Configuration"). An invalid value stops voxbus with exit status 2.
"""


def load_service(name: str) -> ServiceSpec:
    module = importlib.import_module(f"voxbus.{name}.service")
    spec: ServiceSpec = module.SERVICE
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voxbus", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = commands.add_parser("up", help="run all services in one process")
    serve_one = commands.add_parser("serve", help="run one service")
    serve_one.add_argument("service", choices=SERVICE_NAMES, help="the service to run")
    for sub in (up, serve_one):
        sub.add_argument("--host", help="listen address (overrides HOST)")
        sub.add_argument("--port", type=int, help="listen port (overrides PORT)")
    echo_client.add_arguments(commands.add_parser("echo-client", help="a client of /ws/echo"))
    stream.add_arguments(commands.add_parser("stream", help="stream an audio file to a recording session"))
    records.add_arguments(commands)
    local = commands.add_parser("stack", help="(in a checkout) a cluster on this machine", add_help=False)
    local.add_argument("stack_args", nargs=argparse.REMAINDER)
    return parser


_CLIENTS: dict[str, Callable[[argparse.Namespace], int]] = {
    "echo-client": echo_client.main,
    "stream": stream.main,
    "sessions": records.main,
    "calls": records.main,
    "keys": records.main,
}


def _stack(args: argparse.Namespace) -> int:
    """`voxbus stack …` is `python -m voxbus.devinfra stack …`: a development tool, installed
    with the checkout's dev dependencies (it starts Kafka the way the tests do)."""
    if importlib.util.find_spec("voxbus.devinfra") is None:
        sys.stderr.write(
            "voxbus stack: a development tool: run it in a checkout (uv sync, then uv run voxbus stack)\n"
        )
        return 1
    command = [sys.executable, "-m", "voxbus.devinfra", "stack", *args.stack_args]
    return subprocess.run(command, check=False).returncode


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stack":
        return _stack(args)
    client = _CLIENTS.get(args.command)
    if client is not None:
        return client(args)
    overrides = {name: value for name in ("host", "port") if (value := getattr(args, name)) is not None}
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        sys.stderr.write(f"voxbus: {exc}\n")
        return 2
    configure_logging(settings.log_level)
    names = SERVICE_NAMES if args.command == "up" else (args.service,)
    try:
        serve(create_app(settings, [load_service(name) for name in names]), settings)
    except (BusError, StoreError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except SettingsError as exc:  # found only once running, e.g. a POD_NAME another process holds
        log.error("cannot start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
