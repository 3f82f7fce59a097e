"""The wire and storage contract is spelled in libs/common alone: outside it, no module names a
session-hash field or a record header, calls a hash command of the store, or writes a store key
or pub/sub message as a string literal. Services use `records`, `state` and `session_state`."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("src/**/*.py")])
CONTRACT_NAMES = {"SessionField", "Header"}
HASH_COMMANDS = {"hget", "hgetall", "hset", "hset_if_equal", "hincrby"}
PAYLOADS = {"close", "connection-released", "finalized"}
STORE_KEY = re.compile(r"voxbus:[a-z0-9:-]*")


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the string nodes that are docstrings (they may name keys for the reader)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _breaches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Name) and node.id in CONTRACT_NAMES:
            found.append(f"{where}: uses {node.id}")
        elif isinstance(node, ast.alias) and node.name in CONTRACT_NAMES:
            found.append(f"{where}: imports {node.name}")
        elif isinstance(node, ast.Attribute) and node.attr in HASH_COMMANDS:
            found.append(f"{where}: calls .{node.attr}() on the store")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            if STORE_KEY.fullmatch(node.value):
                found.append(f"{where}: store key literal {node.value!r}")
            elif node.value in PAYLOADS:
                found.append(f"{where}: pub/sub message literal {node.value!r}")
    return found


def test_the_sources_are_found() -> None:
    assert len(SOURCES) > 20, f"no service sources under {ROOT}"


def test_no_service_spells_the_contract_itself() -> None:
    breaches = [breach for path in SOURCES for breach in _breaches(path)]
    assert not breaches, "use voxbus.common.records / state / session_state instead:\n" + "\n".join(breaches)
