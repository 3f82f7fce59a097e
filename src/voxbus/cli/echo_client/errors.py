"""The client's errors: one line for the user each, and the exit status."""

from typing import ClassVar


class ClientError(Exception):
    """What went wrong, in one line for the user; `status` is the exit status."""

    status: ClassVar[int] = 1


class UsageError(ClientError):
    """A problem with the command line or the input file (exit status 2)."""

    status = 2
