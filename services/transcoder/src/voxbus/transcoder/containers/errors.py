"""The one exception the container parsers raise for bytes they cannot accept."""


class ContainerError(ValueError):
    """Bytes that are not a valid stream of this container; the message says what and at which byte offset."""
