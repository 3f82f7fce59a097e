"""Where voxbus.devinfra keeps what it downloads: the repository's ignored `.cache` folder."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

CACHE_DIR_ENV = "VOXBUS_CACHE_DIR"


def _is_workspace_root(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return False
    tool = data.get("tool", {})
    return isinstance(tool, dict) and "workspace" in tool.get("uv", {})


def find_repo_root(start: Path) -> Path | None:
    """The nearest folder at or above `start` whose pyproject.toml has [tool.uv.workspace]."""
    for folder in (start, *start.parents):
        if _is_workspace_root(folder):
            return folder
    return None


def cache_dir() -> Path:
    """`$VOXBUS_CACHE_DIR`, else `<repo root>/.cache`, else `~/.cache/voxbus`.

    The repository is looked for from the working directory first, then from this file
    (an editable install or a `.venv` inside the repository).
    """
    override = os.environ.get(CACHE_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        root = find_repo_root(start)
        if root is not None:
            return root / ".cache"
    return Path.home() / ".cache" / "voxbus"
