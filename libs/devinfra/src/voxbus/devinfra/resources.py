"""Files shipped inside the package (the Maven pom and the broker's log4j2 config)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def kafka_resource(name: str) -> Path:
    """Path of `voxbus/devinfra/kafka/<name>` on disk (Maven and java need real files)."""
    path = Path(str(resources.files("voxbus.devinfra").joinpath("kafka", name)))
    if not path.is_file():
        raise FileNotFoundError(f"voxbus.devinfra is missing its shipped file {path}")
    return path
