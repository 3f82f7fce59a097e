"""What every voxbus service runs on: app factory, admin routes, JSON logs, graceful shutdown."""

from voxbus.common.runtime.app import (
    BUS,
    READINESS,
    SETTINGS,
    STORE,
    ServiceSpec,
    background,
    create_app,
    stop_tasks,
    supervised,
)
from voxbus.common.runtime.logs import configure_logging, session_context
from voxbus.common.runtime.readiness import Readiness
from voxbus.common.runtime.serve import serve

__all__ = [
    "BUS",
    "READINESS",
    "SETTINGS",
    "STORE",
    "Readiness",
    "ServiceSpec",
    "background",
    "configure_logging",
    "create_app",
    "serve",
    "session_context",
    "stop_tasks",
    "supervised",
]
