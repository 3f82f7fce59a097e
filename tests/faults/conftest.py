"""The fault tests' seed: FAULT_SEED from the environment (to repeat a run), else a new one, and
named in the report of every test that fails with it, whatever failed. And a Kafka broker of their
own, which they stop, start and reach through a proxy (the shared one is every other test's)."""

from collections.abc import Generator, Iterator

import pytest

from tests.faults import driver
from tests.helpers import free_port
from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.kafka_local import LocalKafka
from voxbus.devinfra.provide import KAFKA_HOW_TO

_SEED = pytest.StashKey[int]()


@pytest.fixture
def fault_seed(request: pytest.FixtureRequest) -> int:
    seed = driver.fault_seed()
    request.node.stash[_SEED] = seed
    return seed


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    seed = item.stash.get(_SEED, None)
    if report.failed and seed is not None:
        report.sections.append(("fault seed", f"repeat this run with {driver.SEED_VARIABLE}={seed}"))
    return report


@pytest.fixture(scope="session")
def own_kafka() -> Iterator[LocalKafka]:
    """A local broker (java and the Maven-fetched jars, as `voxbus.devinfra` runs one) with a
    second listener for clients behind a proxy on `proxied_bootstrap`'s port. It must be a local
    process: a test stops and starts it."""
    try:
        kafka = LocalKafka(proxied_port=free_port())
        with kafka:
            kafka.start()
            yield kafka
    except SourceFailed as exc:
        pytest.fail(f"the fault tests need a local Kafka broker of their own: {KAFKA_HOW_TO}.\n{exc}")
