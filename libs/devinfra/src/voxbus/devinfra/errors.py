"""Errors of voxbus.devinfra: one for "no source could provide it", one for "this source failed"."""

from __future__ import annotations


class InfraUnavailable(RuntimeError):
    """No source (environment, Docker, local process) could provide Kafka or Redis.

    The message says how to provide it and why each source failed.
    """


class SourceFailed(RuntimeError):
    """One source could not provide the service; `provide` records it and tries the next."""
