"""Every module of every voxbus package imports on its own, first, in a fresh interpreter.

A module that works only because something else happened to be imported before it (an import
cycle, a missing import) breaks the first program that imports it alone. Modules are found by
walking the source trees, so a new module is checked without being listed here.

One bare parent interpreter loads the third-party and standard modules the sources import (no
voxbus module), then forks one child per voxbus module: each child imports exactly that module
first, and pays only for voxbus's own code.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the workspace members' source trees and the root package's (the CLI)
SOURCE_ROOTS = [*sorted(REPO.glob("libs/*/src")), *sorted(REPO.glob("services/*/src")), REPO / "src"]

_CHECKER = r"""
import ast, contextlib, importlib, json, os, sys, tempfile, traceback

modules = json.load(sys.stdin)
for path in modules.values():  # preload what the sources import from outside voxbus
    for node in ast.walk(ast.parse(open(path, "rb").read())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            if name.split(".")[0] != "voxbus":
                with contextlib.suppress(Exception):
                    importlib.import_module(name)
if any(name.split(".")[0] == "voxbus" for name in sys.modules):
    raise SystemExit("a third-party import loaded voxbus: the children would not import first")

failures, running, waiting = {}, {}, sorted(modules)
jobs = 2 * (os.cpu_count() or 1)
while waiting or running:
    while waiting and len(running) < jobs:
        module, report = waiting.pop(), tempfile.TemporaryFile()
        pid = os.fork()
        if pid == 0:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
            code = 0
            try:
                importlib.import_module(module)
            except BaseException:
                report.write(traceback.format_exc().encode())
                code = 1
            report.flush()
            os._exit(code)
        running[pid] = (module, report)
    pid, status = os.wait()
    module, report = running.pop(pid)
    if status:
        report.seek(0)
        failures[module] = report.read().decode() or f"wait status {status}"
    report.close()
print(json.dumps(failures))
"""


def discover() -> dict[str, Path]:
    """Every voxbus module under the source roots, by dotted name."""
    modules: dict[str, Path] = {}
    for root in SOURCE_ROOTS:
        found = sorted((root / "voxbus").rglob("*.py"))
        assert found, f"no voxbus modules under {root}: has its layout changed? Update SOURCE_ROOTS"
        for path in found:
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    modules = discover()
    # -I: neither the working directory nor PYTHON* variables decide what is imported
    done = subprocess.run(
        [sys.executable, "-I", "-c", _CHECKER],
        input=json.dumps({name: str(path) for name, path in modules.items()}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"the import checker failed:\n{done.stderr}"
    failures: dict[str, str] = json.loads(done.stdout.splitlines()[-1])
    summary = "\n".join(
        f"  {module}: {report.strip().splitlines()[-1]}" for module, report in sorted(failures.items())
    )
    details = "\n".join(f"--- {module}\n{report}" for module, report in sorted(failures.items()))
    assert not failures, (
        f"{len(failures)} of {len(modules)} modules fail when imported first:\n{summary}\n{details}"
    )


def test_adapters_never_import_the_driver() -> None:
    """Adapters ask their connection only what `protocols.base.Connection` names (at run time or
    for typing): the driver and the session claim import the adapters' interface, not the reverse."""
    driver = {"voxbus.ingest.connection", "voxbus.ingest.claim"}
    adapters = {name: path for name, path in discover().items() if name.startswith("voxbus.ingest.protocols")}
    assert "voxbus.ingest.protocols.session" in adapters
    offending = {}
    for name, path in adapters.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        if imported & driver:
            offending[name] = sorted(imported & driver)
    assert not offending, f"adapters import the driver: {offending}"
