"""aiokafka's errors about what it retries (a fresh topic's leader, a fresh group's coordinator)
are warnings in our logs; its other errors, and the same messages with a fatal error, stay errors."""

import inspect
import io
import json
import logging

import aiokafka.consumer.fetcher
import aiokafka.consumer.group_coordinator
import pytest
from aiokafka import errors

from voxbus.common.runtime.logs import json_handler

COORDINATOR = "aiokafka.consumer.group_coordinator"
FETCHER = "aiokafka.consumer.fetcher"


@pytest.fixture
def logged() -> io.StringIO:
    stream = io.StringIO()
    handler = json_handler(stream)
    logger = logging.getLogger("aiokafka")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def _levels(stream: io.StringIO) -> list[tuple[str, str]]:
    return [(entry["level"], entry["msg"]) for entry in map(json.loads, stream.getvalue().splitlines())]


def test_the_messages_are_aiokafkas_own() -> None:
    """If an aiokafka release rewords them, this fails rather than their ERRORs coming back."""
    assert '"Group Coordinator Request failed: %s"' in inspect.getsource(aiokafka.consumer.group_coordinator)
    fetcher = inspect.getsource(aiokafka.consumer.fetcher)
    assert '"Failed fetch offsets from %s: %s"' in fetcher
    assert '"Failed fetch messages from %s: %s"' in fetcher


def test_retried_startup_errors_are_warnings(logged: io.StringIO) -> None:
    logging.getLogger(COORDINATOR).error(
        "Group Coordinator Request failed: %s", errors.GroupCoordinatorNotAvailableError()
    )
    logging.getLogger(FETCHER).error(
        "Failed fetch offsets from %s: %s", 1, errors.NotLeaderForPartitionError()
    )
    logging.getLogger(FETCHER).error("Failed fetch messages from %s: %s", 1, errors.KafkaConnectionError())
    assert _levels(logged) == [
        ("WARNING", "Group Coordinator Request failed: [Error 15] GroupCoordinatorNotAvailableError"),
        ("WARNING", "Failed fetch offsets from 1: [Error 6] NotLeaderForPartitionError"),
        ("WARNING", "Failed fetch messages from 1: KafkaConnectionError"),
    ]


def test_fatal_and_other_errors_stay_errors(logged: io.StringIO) -> None:
    logging.getLogger(COORDINATOR).error(
        "Group Coordinator Request failed: %s", errors.TopicAuthorizationFailedError()
    )
    logging.getLogger(COORDINATOR).error("Heartbeat session expired - marking coordinator dead")
    logging.getLogger(FETCHER).error("Failed fetch offsets from %s: %s", 1, errors.UnknownError())
    logging.getLogger("aiokafka.cluster").error("Topic %s not found in cluster metadata", "t")
    assert [level for level, _ in _levels(logged)] == ["ERROR"] * 4
