"""What every voxbus service runs on: app factory, admin routes, JSON logs, graceful shutdown."""

from voxbus.common.runtime.app import (
    BUS,
    LIVENESS,
    READINESS,
    SETTINGS,
    STORE,
    ServiceSpec,
    background,
    consuming,
    create_app,
    stop_tasks,
    supervised,
)
from voxbus.common.runtime.logs import configure_logging, session_context, tag_session
from voxbus.common.runtime.readiness import Readiness
from voxbus.common.runtime.serve import serve
from voxbus.common.runtime.supervise import Work

__all__ = [
    "BUS",
    "LIVENESS",
    "READINESS",
    "SETTINGS",
    "STORE",
    "Readiness",
    "ServiceSpec",
    "Work",
    "background",
    "configure_logging",
    "consuming",
    "create_app",
    "serve",
    "session_context",
    "stop_tasks",
    "supervised",
    "tag_session",
]
