"""Fault injection over a local voxbus cluster: `voxbus serve` processes over real Kafka and Redis,
at least 20 sessions streaming known audio with acks, faults at moments a seed draws, and the
check that every chunk a client was told is accepted is in its recording exactly once, in order,
sample for sample.

The sessions are `voxbus stream`'s own client (`voxbus.cli.stream.session.StreamSession`), which
resumes as docs/protocols/session.md says. The driver reaches it only through two public aiohttp
hooks: a resolver (`Ingress`) that sends each connection to an ingest pod taking connections, as
a load balancer in front of the pods would (a pod is taken out while it is stopped and put back
once it is ready again), and a WebSocket response class that notes every message and close each
socket got (`SocketLog`).

What a recording may hold besides the acknowledged chunks (docs/protocols/session.md,
"Resuming"): a resume greeting's `chunk_count` is what the recording holds, and the client sends
every chunk after it. A chunk the server read and stored but could not acknowledge (its socket
went away) is in the recording and counted by the next greeting, so it is not sent again. So a
session's recording must be exactly its first N chunks, N the count its close reply gives, and N
at least the highest ack the client got: nothing acknowledged missing, nothing twice, nothing out
of order, nothing of another session's.

Repeat a run with FAULT_SEED=<seed> (every failure names it): the seed fixes the audio, which
faults come, when, to which process and for how long, and the pods clients pick. How the
processes interleave is the machine's: a run repeats its faults, not its every event.
"""

import asyncio
import io
import json
import os
import random
import signal
import socket
import time
import wave
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import numpy as np
import soundfile
from aiohttp.abc import AbstractResolver, ResolveResult

from tests.servers import Process
from voxbus.cli.echo_client.errors import ClientError
from voxbus.cli.stream.audio import open_audio
from voxbus.cli.stream.session import Counts, StreamSession, Target
from voxbus.common.client_messages import SessionClosed, SessionFailed

SEED_VARIABLE: Final = "FAULT_SEED"
RATE: Final = 16000
SESSIONS: Final = 20
INGRESS_HOST: Final = "ingest.faults.test"  # what the clients connect to; `Ingress` resolves it
# past the audio's own length: resumes (each after the client's backoff) and the close's wait
_SESSION_SLACK_SECONDS: Final = 150.0
_READY_SECONDS: Final = 90.0  # a restarted consumer joins once its dead predecessor timed out (10 s)

Injector = Callable[["Fault"], Awaitable[str]]


def fault_seed() -> int:
    """FAULT_SEED if set (to repeat a run), else a new seed."""
    given = os.environ.get(SEED_VARIABLE, "").strip()
    if not given:
        return random.SystemRandom().randrange(2**32)
    try:
        return int(given)
    except ValueError:
        raise ValueError(f"{SEED_VARIABLE} must be an integer, got {given!r}") from None


def pod_name(process: Process) -> str:
    """The POD_NAME `tests.servers.Process` gives its process."""
    return f"{process.name}-{process.port}"


# -- where clients connect ----------------------------------------------------------------------


class Ingress:
    """The ingest pods behind `INGRESS_HOST`, and which of them take connections now."""

    def __init__(self, pods: Sequence[Process]) -> None:
        self._pods = list(pods)
        self._out: set[str] = set()

    def take_out(self, pod: Process) -> None:
        self._out.add(pod_name(pod))

    def put_back(self, pod: Process) -> None:
        self._out.discard(pod_name(pod))

    def serving(self) -> list[Process]:
        return [pod for pod in self._pods if pod_name(pod) not in self._out]

    def resolver(self, rng: random.Random) -> "PodResolver":
        return PodResolver(self, rng)


class PodResolver(AbstractResolver):
    """One client's view of `Ingress`: each connection goes to a pod taking connections, picked
    with the client's own rng; `last` is the pod of the latest connection."""

    def __init__(self, ingress: Ingress, rng: random.Random) -> None:
        self._ingress, self._rng = ingress, rng
        self.last = "-"

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        serving = self._ingress.serving()
        if host != INGRESS_HOST or not serving:
            raise OSError(f"no ingest pod takes connections for {host}")
        pod = self._rng.choice(serving)
        self.last = pod_name(pod)
        return [
            ResolveResult(
                hostname=host, host="127.0.0.1", port=pod.port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


# -- what each client saw -------------------------------------------------------------------


@dataclass
class SocketLog:
    """What one socket of a session got from the server, times in seconds into the run."""

    pod: str
    opened: float
    greeting: int | None = None  # the greeting's chunk_count
    acks: list[int] = field(default_factory=list)  # every ack's chunk_count, as they came
    acked_at: list[float] = field(default_factory=list)  # when each came
    failed: int = 0  # "Failed to process chunk" answers
    errors: list[str] = field(default_factory=list)  # error replies (refusals)
    final: dict[str, Any] | None = None  # the close's reply
    final_at: float | None = None
    close_code: int | None = None
    close_reason: str = ""
    ended: float | None = None

    def saw(self, message: aiohttp.WSMessage, close_code: int | None, at: float) -> dict[str, Any] | None:
        """Note a message; the JSON body of a text message."""
        if message.type == aiohttp.WSMsgType.TEXT:
            body: dict[str, Any] = json.loads(message.data)
            said = body.get("message")
            if "error" in body and said is None:
                self.errors.append(str(body["error"]))
            elif said in ("Audio session created", "Audio session resumed"):
                self.greeting = int(body["chunk_count"])
            elif said == "Chunk processed successfully":
                self.acks.append(int(body["chunk_count"]))
                self.acked_at.append(at)
            elif said == "Failed to process chunk":
                self.failed += 1
            elif said in ("Session closed successfully", "Session failed", "Session close timed out"):
                self.final, self.final_at = body, at
            return body
        ending = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        if message.type in ending and self.ended is None:
            self.ended, self.close_code = at, close_code
            if message.type == aiohttp.WSMsgType.CLOSE:
                self.close_reason = str(message.extra or "")
            elif message.type == aiohttp.WSMsgType.ERROR:
                self.close_reason = repr(message.data)
        return None

    def last_count(self) -> int | None:
        """The last chunk count this socket was told: its last ack, else its greeting."""
        return self.acks[-1] if self.acks else self.greeting

    def describe(self) -> str:
        acks = f"acks {self.acks[0]}..{self.acks[-1]}" if self.acks else "no acks"
        ended = "open" if self.ended is None else f"ended {self.ended:.1f}s close {self.close_code}"
        extra = "".join(
            [
                f" failed {self.failed}" if self.failed else "",
                f" errors {self.errors}" if self.errors else "",
                f" reason {self.close_reason!r}" if self.close_reason else "",
                f" final {self.final.get('message')!r}" if self.final else "",
            ]
        )
        return f"{self.pod} at {self.opened:.1f}s greeting {self.greeting} {acks} {ended}{extra}"


@dataclass
class SessionLog:
    """One streaming client: what it sent, what each of its sockets got, how it ended."""

    index: int
    chunks: list[bytes]
    sockets: list[SocketLog] = field(default_factory=list)
    session_id: str | None = None
    result: SessionClosed | SessionFailed | None = None
    gave_up: str | None = None  # the client's error, when it did not get to a close reply
    recording: bytes | None = None  # the recording's PCM, as `GET …/audio` serves it
    info: dict[str, Any] | None = None  # `GET /api/audio/sessions/{id}`

    def acked(self) -> int:
        """The highest chunk count any ack told this client."""
        return max((ack for sock in self.sockets for ack in sock.acks), default=0)

    def describe(self) -> str:
        lines = [f"session {self.index} ({self.session_id}):"]
        lines += [f"  socket {n}: {sock.describe()}" for n, sock in enumerate(self.sockets)]
        return "\n".join(lines)


def _observing(
    log: SessionLog, resolver: PodResolver, clock: Callable[[], float]
) -> type[aiohttp.ClientWebSocketResponse]:
    """A WebSocket response class that notes in `log` what each socket of the session receives."""

    class Observed(aiohttp.ClientWebSocketResponse):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._log = SocketLog(pod=resolver.last, opened=clock())
            log.sockets.append(self._log)

        async def receive(self, timeout: float | None = None) -> Any:
            message = await super().receive(timeout)
            body = self._log.saw(message, self.close_code, clock())
            if body is not None and log.session_id is None and "session_id" in body:
                log.session_id = str(body["session_id"])
            return message

    return Observed


# -- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    """`kind` (an injector's name) done to `target` at `at` seconds into the run, lasting `hold` s."""

    at: float
    kind: str
    target: str
    hold: float

    def describe(self) -> str:
        return f"{self.kind} {self.target} at {self.at:.1f}s for {self.hold:.1f}s"


@dataclass(frozen=True, slots=True)
class Injected:
    """A fault as it happened: when it began and ended, and what its injector noted."""

    fault: Fault
    began: float
    ended: float
    note: str

    def describe(self) -> str:
        return f"{self.fault.kind} {self.fault.target}: {self.began:.1f}s-{self.ended:.1f}s {self.note}"


# -- the run --------------------------------------------------------------------------------


class FaultRun:
    """One run: the seed's audio and faults, the sessions streaming through them, the outcome.

    Faults on one target come one after another, and one ingest pod at most is out at a time (as
    a disruption budget keeps it): clients always have a pod to resume on."""

    def __init__(self, tmp_path: Path, *, seed: int, sessions: int = SESSIONS, seconds: float = 30.0) -> None:
        self.seed, self.seconds = seed, seconds
        self.rng = random.Random(seed)
        self._tmp_path = tmp_path
        self._sent = tmp_path / "sent"
        self._sent.mkdir(exist_ok=True)
        self.sessions = [self._session(index) for index in range(sessions)]
        self.injected: list[Injected] = []
        self.ingress = Ingress([])
        self.processes: dict[str, Process] = {}
        self._t0 = time.monotonic()
        self._locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.injectors: dict[str, Injector] = {"kill": self.kill, "term": self.drain}

    def clock(self) -> float:
        """Seconds into the run."""
        return time.monotonic() - self._t0

    def _session(self, index: int) -> SessionLog:
        """A session's audio, its own: a tone at a frequency no other session has, under noise
        from the seed, so a chunk out of place, twice, or from another session shows."""
        rng = np.random.default_rng([self.seed, index])
        t = np.arange(int(self.seconds * RATE)) / RATE
        samples = 0.3 * np.sin(2 * np.pi * (180 + 35 * index) * t) + 0.1 * rng.standard_normal(len(t))
        path = self._sent / f"session-{index:02d}.wav"
        soundfile.write(path, (np.clip(samples, -1, 1) * 32767).astype(np.int16), RATE, subtype="PCM_16")
        return SessionLog(index=index, chunks=list(open_audio(path).chunks()))

    def audio_path(self, log: SessionLog) -> Path:
        return self._sent / f"session-{log.index:02d}.wav"

    def schedule(
        self,
        plan: Sequence[tuple[str, str]],
        *,
        between: tuple[float, float],
        hold: tuple[float, float],
    ) -> list[Fault]:
        """Each (kind, target) of `plan` at a moment drawn from the seed within `between` (seconds
        into the run), held for a time drawn within `hold`; in time order."""
        faults = [
            Fault(
                at=round(self.rng.uniform(*between), 2),
                kind=kind,
                target=target,
                hold=round(self.rng.uniform(*hold), 2),
            )
            for kind, target in plan
        ]
        return sorted(faults, key=lambda fault: fault.at)

    def label(self, message: str) -> str:
        """`message`, naming the seed that repeats the run."""
        return f"[{SEED_VARIABLE}={self.seed}] {message}"

    # -- injectors ------------------------------------------------------------------------

    def _lock(self, target: str) -> asyncio.Lock:
        process = self.processes.get(target)
        return self._locks["ingest" if process is not None and process.name == "ingest" else target]

    async def kill(self, fault: Fault) -> str:
        """SIGKILL, dead for `hold` s, then started again (and back in the ingress once ready)."""
        process = self.processes[fault.target]
        self.ingress.take_out(process)
        process.kill()
        await asyncio.sleep(fault.hold)  # the time it stays dead
        return await self._restart(process, "killed")

    async def drain(self, fault: Fault) -> str:
        """SIGTERM (out of the ingress first, as Kubernetes takes a terminating pod out of its
        Service), its exit awaited, then started again `hold` s later."""
        process = self.processes[fault.target]
        if process.process is None:
            raise AssertionError(f"{fault.target} is not running")
        self.ingress.take_out(process)
        process.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = await asyncio.to_thread(process.process.wait, 60)
        took = time.monotonic() - started
        await asyncio.sleep(fault.hold)  # the time it stays down
        return await self._restart(process, f"exit {code} after {took:.1f}s")

    async def _restart(self, process: Process, what: str) -> str:
        process.start()
        started = time.monotonic()
        await process.ready(timeout=_READY_SECONDS)
        self.ingress.put_back(process)
        return f"{what}; ready {time.monotonic() - started:.1f}s after its restart"

    async def _inject(self, fault: Fault) -> None:
        await asyncio.sleep(max(0.0, fault.at - self.clock()))  # the fault's moment, from the seed
        async with self._lock(fault.target):
            began = self.clock()
            note = await self.injectors[fault.kind](fault)
            self.injected.append(Injected(fault, began, self.clock(), note))

    # -- streaming ------------------------------------------------------------------------

    async def stream(
        self,
        processes: Sequence[Process],
        faults: Sequence[Fault],
        *,
        injectors: Mapping[str, Injector] | None = None,
    ) -> "Outcome":
        """Every session streams its audio at real time while the faults come, then closes; the
        recordings are fetched as a client would. `injectors`: fault kinds of the test's own,
        besides `kill` and `term`."""
        ingests = [process for process in processes if process.name == "ingest"]
        self.ingress = Ingress(ingests)
        self.processes = {pod_name(process): process for process in processes}
        self.processes.update({process.name: process for process in processes if process.name != "ingest"})
        self.injectors.update(injectors or {})
        self._t0 = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for log in self.sessions:
                group.create_task(self._stream_one(log), name=f"session-{log.index}")
            for fault in faults:
                group.create_task(self._inject(fault), name=f"fault-{fault.kind}-{fault.target}")
        async with aiohttp.ClientSession() as http:
            for log in self.sessions:
                await self._fetch(http, log)
        outcome = Outcome(self, list(processes))
        # what happened, passed or not, beside the processes' logs
        (self._tmp_path / "faults.txt").write_text(outcome.report("the run"))
        return outcome

    async def _stream_one(self, log: SessionLog) -> None:
        resolver = self.ingress.resolver(random.Random(f"{self.seed}/{log.index}"))
        target = Target(
            url=f"ws://{INGRESS_HOST}/api/ws/audio", api_key=None, user_id=f"fault-{log.index}", realtime=True
        )
        audio = open_audio(self.audio_path(log))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False),
            ws_response_class=_observing(log, resolver, self.clock),
        ) as http:
            try:
                async with asyncio.timeout(self.seconds + _SESSION_SLACK_SECONDS):
                    log.result = await StreamSession(
                        http, target, audio, Counts(total_seconds=audio.seconds)
                    ).run(None)
            except (ClientError, TimeoutError) as exc:
                log.gave_up = f"{type(exc).__name__}: {exc}"

    async def _fetch(self, http: aiohttp.ClientSession, log: SessionLog) -> None:
        serving = self.ingress.serving()
        if log.session_id is None or not serving:
            return
        base = f"{serving[0].url}/api/audio/sessions/{log.session_id}"
        async with http.get(base) as response:
            log.info = await response.json() if response.status == 200 else {"status_code": response.status}
        async with http.get(f"{base}/audio") as response:
            if response.status == 200:
                with wave.open(io.BytesIO(await response.read())) as reader:
                    log.recording = reader.readframes(reader.getnframes())


class Outcome:
    """What the run did and what the clients got; `check()` holds it to the guarantee."""

    def __init__(self, run: FaultRun, processes: list[Process]) -> None:
        self.run, self.sessions, self.injected = run, run.sessions, run.injected
        self._processes = processes
        # every chunk of every session, to name what a recording holds where it should not
        self._origin: dict[bytes, tuple[int, int]] = {
            chunk: (log.index, number)
            for log in self.sessions
            for number, chunk in enumerate(log.chunks, start=1)
        }

    def sockets(self) -> Iterator[tuple[SessionLog, SocketLog]]:
        for log in self.sessions:
            for sock in log.sockets:
                yield log, sock

    def check(self) -> None:
        """Every session closed `completed`; its recording is exactly its first N chunks, N its
        close reply's count and at least its highest ack; each socket's acks count up by one from
        its greeting."""
        problems = [problem for log in self.sessions for problem in self._problems(log)]
        if problems:
            raise AssertionError(self.report("\n".join(problems)))

    def report(self, what: str) -> str:
        """`what` went wrong, with the seed, the faults as they happened, and every session's sockets."""
        faults = "\n".join(f"  {injected.describe()}" for injected in self.injected) or "  none"
        sessions = "\n".join(log.describe() for log in self.sessions)
        logs = sorted({str(process.log_dir) for process in self._processes})
        return self.run.label(f"{what}\nfaults:\n{faults}\n{sessions}\nprocess logs in {', '.join(logs)}")

    def _problems(self, log: SessionLog) -> Iterator[str]:
        name = f"session {log.index} ({log.session_id})"
        for number, sock in enumerate(log.sockets):
            start = sock.greeting if sock.greeting is not None else 0
            if sock.acks and sock.acks != list(range(start + 1, start + 1 + len(sock.acks))):
                yield f"{name}: socket {number}'s acks do not count up from its greeting {start}: {sock.acks}"
        if log.result is None:
            yield f"{name}: no close reply: {log.gave_up}"
            return
        if not isinstance(log.result, SessionClosed) or log.result.status != "completed":
            yield f"{name}: closed {log.result.to_wire()}"
            return
        count, acked = log.result.chunk_count, log.acked()
        if count < acked:
            yield f"{name}: the close reply counts {count} chunks, but {acked} were acknowledged"
        if log.info is None or log.info.get("total_chunks") != count or log.info.get("status") != "completed":
            yield f"{name}: its record disagrees with the close reply ({count} chunks, completed): {log.info}"
        if log.recording is None:
            yield f"{name}: no recording could be downloaded"
            return
        expected = b"".join(log.chunks[:count])
        if log.recording != expected:
            yield f"{name}: {self._difference(log, log.recording, count)}"

    def _difference(self, log: SessionLog, recorded: bytes, count: int) -> str:
        """Where the recording first departs from the session's first `count` chunks, and what it
        holds there instead (a chunk of its own from elsewhere, another session's, or unknown)."""
        size = len(log.chunks[0])
        position = 0
        for number, chunk in enumerate(log.chunks[:count], start=1):
            held = recorded[position : position + len(chunk)]
            if held != chunk:
                origin = self._origin.get(held)
                what = (
                    f"chunk {origin[1]} of session {origin[0]}"
                    if origin is not None
                    else f"{len(held)} bytes of no chunk sent"
                )
                return (
                    f"the recording ({len(recorded) / size:.2f} chunks of audio; {count} counted, "
                    f"{log.acked()} acknowledged) holds {what} where chunk {number} belongs"
                )
            position += len(chunk)
        return (
            f"the recording holds {len(recorded) - position} bytes past its {count} counted chunks "
            f"({log.acked()} acknowledged)"
        )
