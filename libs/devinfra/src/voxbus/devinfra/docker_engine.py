"""Is there a Docker engine for testcontainers? Asked once per process, quickly."""

from __future__ import annotations

import functools
import gc
import os
import warnings

DOCKER_SWITCH_ENV = "VOXBUS_DEVINFRA_DOCKER"
_PING_TIMEOUT_S = 3


@functools.cache
def docker_engine_problem() -> str | None:
    """None if a Docker engine answers a ping, else why testcontainers can't be used.

    Set VOXBUS_DEVINFRA_DOCKER=0 to skip Docker even where an engine runs.
    """
    if os.environ.get(DOCKER_SWITCH_ENV, "1") == "0":
        return f"skipped ({DOCKER_SWITCH_ENV}=0)"
    try:
        # testcontainers' own client, so its settings (DOCKER_HOST, ~/.testcontainers.properties)
        # apply; imported here since it takes ~0.4 s and is not needed when env vars are set
        from testcontainers.core.docker_client import DockerClient  # noqa: PLC0415
    except ImportError as exc:
        return f"testcontainers is not installed ({exc})"
    # A failed connect leaves the docker SDK's socket unclosed; its ResourceWarning would
    # surface later, where pytest's filterwarnings=error turns it into a failing test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = DockerClient(timeout=_PING_TIMEOUT_S).client
            try:
                client.ping()
            finally:
                client.close()
        except Exception as exc:  # the docker SDK raises many kinds (requests, OSError, ...)
            problem: str | None = f"no Docker engine answers ({exc})"
        else:
            problem = None
        gc.collect()
    return problem
