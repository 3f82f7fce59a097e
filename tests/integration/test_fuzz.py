"""Each fuzz target (fuzz/, atheris and libFuzzer) runs for a fixed budget from its committed
corpus, in a process of its own: a crash (an exception other than the parser's own refusal, a
broken property, a hang or a native crash) fails the test with the input libFuzzer saved and the
command that replays it. Inputs it finds new go to a scratch folder, not into the corpus."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "fuzz" / "corpus"
TARGETS = ("ogg", "webm", "flac", "wav", "mp3", "aac", "wyoming")
SECONDS_EACH = 6  # about 55 s for all of them with their start-up; longer runs by hand (fuzz/README.md)
HANG_SECONDS = 10  # one input taking this long is a hang: libFuzzer saves it as timeout-<sha1>
_FINDINGS = ("crash-", "timeout-", "oom-", "leak-")


@pytest.mark.parametrize("target", TARGETS)
def test_the_fuzzer_finds_nothing(target: str, tmp_path: Path) -> None:
    found = tmp_path / "new-inputs"
    found.mkdir()
    command = [
        sys.executable,
        "-m",
        f"fuzz.{target}",
        "-seed=1",
        f"-max_total_time={SECONDS_EACH}",
        f"-timeout={HANG_SECONDS}",
        f"-artifact_prefix={tmp_path}/",
        str(found),  # the first folder is where libFuzzer writes: the committed corpus stays as it is
        str(CORPUS / target),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=SECONDS_EACH * 5 + 60, check=False
    )
    saved = sorted(path for path in tmp_path.iterdir() if path.name.startswith(_FINDINGS))
    if done.returncode or saved:
        inputs = ", ".join(map(str, saved)) or "none saved"
        replay = f"uv run --frozen python -m fuzz.{target} {saved[0]}" if saved else " ".join(command)
        pytest.fail(
            f"fuzz.{target} failed (exit {done.returncode}); the input: {inputs}\n"
            f"replay: {replay}\n{done.stderr[-3000:]}"
        )
    assert "Done" in done.stderr, done.stderr[-3000:]  # it ran, and ran out of time, not of luck
