"""Reading the suite's results: one scenario's runs, voxbus's against its same-run baseline.

Every benchmark script writes `runs`, each with a `server` name; the baseline's name ends in
"(baseline)". Echo runs carry `delay_ms`. CPU shares carry the run's wall time, so the broker's
CPU per frame can be derived from its share.
"""

from typing import Any

Results = dict[str, dict[str, Any]]  # scenario name → that script's JSON
FRAMES_PER_SECOND = 50  # 20 ms frames


def is_baseline(run: dict[str, Any]) -> bool:
    return str(run["server"]).endswith("(baseline)")


def runs(
    results: Results, scenario: str, *, baseline: bool, delay_ms: int | None = None
) -> list[dict[str, Any]]:
    found = [
        run
        for run in results[scenario]["runs"]
        if is_baseline(run) == baseline and (delay_ms is None or run.get("delay_ms") == delay_ms)
    ]
    if not found:
        raise LookupError(f"{scenario}: no {'baseline' if baseline else 'voxbus'} run at delay {delay_ms}")
    return found


def pair(
    results: Results, scenario: str, delay_ms: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(voxbus's run, the baseline's run); for telephony, at its largest load."""
    ours = runs(results, scenario, baseline=False, delay_ms=delay_ms)[-1]
    theirs = runs(results, scenario, baseline=True, delay_ms=delay_ms)[-1]
    return ours, theirs


def frames_of(run: dict[str, Any]) -> int:
    """Frames a run's CPU is divided by: echoed (echo, telephony) or acknowledged (acks)."""
    return int(run.get("received", run.get("frames", 0)))


def broker_us_per_frame(run: dict[str, Any]) -> float | None:
    """The local broker's CPU over the run, per frame; None where it was not measured (no broker
    on this machine, or an embedded run that uses none)."""
    share = run["share"]
    if share.get("broker") is None or not frames_of(run):
        return None
    return 1e6 * share["broker"] * share["wall_seconds"] / frames_of(run)


def server_us_per_frame(run: dict[str, Any]) -> float:
    """The servers' CPU per frame: one figure (acks, echo) or the sum over processes (telephony)."""
    value = run["cpu_us_per_frame"]
    return float(sum(value.values())) if isinstance(value, dict) else float(value)


def by_process(run: dict[str, Any]) -> dict[str, float]:
    value = run.get("cpu_us_per_frame_by_process", run["cpu_us_per_frame"])
    return dict(value) if isinstance(value, dict) else {run["server"]: float(value)}


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or theirs is None or theirs <= 0:
        return None
    return ours / theirs


def faults(run: dict[str, Any]) -> int:
    """Frames lost, duplicated, reordered or wrong in one run (echo and telephony); a stream that
    failed has its frames among the lost."""
    keys = ("lost", "duplicated", "reordered", "bad", "wrong_size", "other")
    return sum(int(run.get(key) or 0) for key in keys)
