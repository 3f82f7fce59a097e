"""The one typed settings object, read from the environment and `.env` (docs/architecture.md,
settings by part).

Names the seed servers used (`HOST`, `PORT`, `API_KEY`, …) keep their meaning. An invalid value
stops the program with a message naming the variable (`load_settings` → `SettingsError`).
"""

import errno
import os
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, IPvAnyNetwork, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from voxbus.common.constants import SAMPLE_RATES, Topic

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
AudioFormatName = Literal["wav", "mp3", "flac", "aac", "pcm", "opus", "ogg", "webm"]
# what a telephony call does with the caller's audio (docs/protocols/vonage.md, call modes)
TelephonyMode = Literal["record", "echo", "record+echo"]
TELEPHONY_MODES: tuple[TelephonyMode, ...] = ("record", "echo", "record+echo")


def call_mode(given: str) -> str:
    """A mode as written in a URL: `record+echo` unescaped in a query reads as "record echo"."""
    return given.strip().replace(" ", "+")


def _sample_rate(value: int) -> int:
    if value not in SAMPLE_RATES:
        raise ValueError(f"sample rate must be one of {', '.join(map(str, SAMPLE_RATES))}")
    return value


SampleRate = Annotated[int, AfterValidator(_sample_rate)]


def _carrier_rate(value: int) -> int:
    if value not in (8000, 16000, 24000):
        raise ValueError("must be 8000, 16000 or 24000")
    return value


# an int checked after parsing, not a Literal[8000, …]: an environment value is a string, which a
# Literal of ints refuses whatever it says
CarrierRate = Annotated[int, AfterValidator(_carrier_rate)]  # Vonage's and Exotel's rates


def _default_pod_name() -> str:
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Every knob of voxbus. Field name upper-cased = environment variable."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True)

    # Serving (seed names)
    host: str = "0.0.0.0"  # a server in a container listens on all interfaces
    port: int = Field(default=8000, ge=0, le=65535)
    wyoming_port: int = Field(default=10700, ge=0, le=65535)  # Wyoming over TCP (ingest); 0: off
    log_level: LogLevel = "INFO"
    api_key: Annotated[tuple[str, ...], NoDecode] = ()

    # Audio and sessions (seed names)
    audio_storage_path: Path = Path("audio_storage")
    default_sample_rate: SampleRate = 44100
    default_channels: int = Field(default=1, ge=1, le=2)
    default_format: AudioFormatName = "wav"
    max_session_duration_hours: float = Field(default=24.0, gt=0)
    max_chunk_size_mb: float = Field(default=10.0, gt=0)
    max_concurrent_sessions: int = Field(default=1000, ge=1)
    max_connections_per_session: int = Field(default=1, ge=1)
    connection_timeout_seconds: float = Field(default=300.0, gt=0)
    max_message_size_bytes: int = Field(default=1_048_576, ge=1024)
    segment_seconds: float = Field(default=30.0, gt=0)
    # transcoder and writer over Kafka: how long a fetch may wait to fill, so their fixed cost
    # per batch is shared by more records (the echo path never waits)
    recording_batch_ms: int = Field(default=250, ge=0, le=1000)
    echo_delay_ms: int = Field(default=1000, ge=0, le=60_000)
    # the echo service holds at most (delay + 1 s) of a session's audio, and never more than this
    echo_max_pending_bytes: int = Field(default=8 * 1024 * 1024, ge=4096)
    # how long a looked-up route is reused (a resume's start record drops it at once)
    echo_route_cache_ms: int = Field(default=2000, ge=0, le=10_000)
    # echoes are produced this long before they are due; ingest holds them until then
    echo_send_ahead_ms: int = Field(default=200, ge=0, le=5000)

    # Telephony (docs/protocols/vonage.md)
    # the public base URL carriers reach voxbus at (the load balancer's): webhook and media URLs
    host_name: str = "http://localhost:8000"
    telephony_mode: TelephonyMode = "record"  # per call, an answer URL's `?mode=` overrides it
    telephony_greeting_wav: Path | None = None  # played to the caller once the media socket opens
    telephony_greeting_text: str = ""  # a Vonage `talk` action before the call is connected
    # outbound audio a call's socket holds before its oldest is dropped (the carrier plays it in real time)
    telephony_max_queued_seconds: float = Field(default=60.0, gt=0, le=600)
    vonage_sample_rate: CarrierRate = 16000
    # set: Vonage's signed webhooks (and the media socket's Authorization) are verified, HS256
    vonage_signature_secret: str | None = None
    # Exotel (docs/protocols/exotel.md): both set, its callbacks must carry them as HTTP Basic auth
    # set: Twilio's webhooks and media sockets must carry its X-Twilio-Signature, else 401
    twilio_auth_token: str | None = None
    exotel_sample_rate: CarrierRate = 8000  # the rate `GET /exotel/stream` asks Exotel's stream for
    exotel_api_key: str | None = None
    exotel_api_token: str | None = None
    # set: Exotel's callbacks are taken only from these addresses (IPs or networks, comma-separated)
    exotel_allowed_ips: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()
    # load balancers whose X-Forwarded-For names the client (IPs or networks, comma-separated)
    trusted_proxies: Annotated[tuple[IPvAnyNetwork, ...], NoDecode] = ()

    # Infrastructure: unset → in-process backends
    kafka_bootstrap_servers: str | None = None
    # in-process bus: a producer waits while a partition holds this many bytes its slowest
    # running reader has not read (the backlog is memory there, not a broker's disk)
    memory_bus_max_unread_bytes: int = Field(default=8 * 1024 * 1024, ge=1024 * 1024)
    redis_url: str | None = None
    topic_prefix: str = "voxbus."
    audio_partitions: int = Field(default=12, ge=1)
    egress_partitions: int = Field(default=64, ge=1)
    events_partitions: int = Field(default=12, ge=1)
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_linger_ms: int = Field(default=2, ge=0, le=1000)
    # unique per process by default (two processes on one host share $HOSTNAME); one given
    # explicitly is kept as given, and an ingest refuses to start while a live process holds it
    pod_name: str = Field(default_factory=_default_pod_name)
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0)
    # slots, routes and egress leases of a pod that died are free again this long after
    lease_seconds: float = Field(default=15.0, ge=1)
    close_timeout_seconds: float = Field(default=30.0, gt=0)  # close_session waits this long for the file

    # Background work (consumers): a crash restarts it after a backoff doubling from
    # WORKER_RESTART_BACKOFF_SECONDS up to WORKER_RESTART_BACKOFF_MAX_SECONDS; after
    # WORKER_MAX_FAILURES crashes in a row without progress /health fails (503)
    worker_restart_backoff_seconds: float = Field(default=0.5, gt=0)
    worker_restart_backoff_max_seconds: float = Field(default=30.0, gt=0)
    worker_max_failures: int = Field(default=5, ge=1)
    # the writer keeps at most this many sessions' files open (each holds <= 2 files between
    # batches); unset: a quarter of the process's open-file limit (RLIMIT_NOFILE)
    writer_max_open_recordings: int | None = Field(default=None, ge=1)

    @field_validator("api_key", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        """`API_KEY=a,b` is a key list; an empty value means none."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("exotel_allowed_ips", "trusted_proxies", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        """`10.0.0.0/8, 203.0.113.7` is a list of networks (an address is a network of one)."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _exotel_credentials_in_pairs(self) -> "Settings":
        if (self.exotel_api_key is None) != (self.exotel_api_token is None):
            raise ValueError("EXOTEL_API_KEY and EXOTEL_API_TOKEN are set together, or neither")
        return self

    @field_validator("host_name")
    @classmethod
    def _public_url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        if scheme not in ("http", "https") or not rest.strip("/"):
            raise ValueError("must be the public base URL, http:// or https:// and a host")
        return value.rstrip("/")

    @field_validator("telephony_greeting_wav")
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError("no such file")
        return value

    @field_validator(
        "kafka_bootstrap_servers",
        "redis_url",
        "vonage_signature_secret",
        "exotel_api_key",
        "exotel_api_token",
        "twilio_auth_token",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("pod_name", mode="before")
    @classmethod
    def _empty_pod_name_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return _default_pod_name()
        return value

    def topic(self, topic: Topic) -> str:
        """Full topic name for a topic suffix."""
        return f"{self.topic_prefix}{topic.value}"

    def consumer_group(self, name: str) -> str:
        """A service's Kafka consumer group: named like its topics, so deployments (or test
        runs) that share a broker with their own TOPIC_PREFIX never join each other's groups."""
        return f"{self.topic_prefix}{name}"

    def topic_partitions(self) -> dict[str, int]:
        """Every topic voxbus uses, with its partition count."""
        return {
            self.topic(Topic.AUDIO_RAW): self.audio_partitions,
            self.topic(Topic.AUDIO_PCM): self.audio_partitions,
            self.topic(Topic.EGRESS): self.egress_partitions,
            self.topic(Topic.EVENTS): self.events_partitions,
        }


class SettingsError(Exception):
    """Invalid configuration; the message names each offending variable."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and `.env`), turning errors into `SettingsError`."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            variable = "_".join(str(part) for part in error["loc"][:1]).upper()
            if not variable:  # a rule across settings: its message names them (and no values)
                lines.append(error["msg"].removeprefix("Value error, "))
                continue
            lines.append(f"{variable}: {error['msg']} (got {error.get('input')!r})")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from exc


class ListenError(SettingsError):
    """A port to serve on cannot be listened on (another process has it): the message names the
    address and the setting that chooses another."""

    @classmethod
    def on(cls, host: str, port: int, exc: OSError, what: str, setting: str) -> "ListenError":
        where = f"cannot listen on {host}:{port} for {what}"
        if exc.errno == errno.EADDRINUSE:  # asyncio's message repeats the address: the errno says it
            return cls(f"{where} (address already in use): set {setting} to a free port")
        if isinstance(exc, socket.gaierror):  # its errno is the resolver's (negative), its text says
            return cls(f"{where} ({exc.strerror}): set HOST to an address of this machine")
        return cls(f"{where} ({exc}): check HOST, or set {setting}")
