"""The fault tests' seed: FAULT_SEED from the environment (to repeat a run), else a new one, and
named in the report of every test that fails with it, whatever failed."""

from collections.abc import Generator

import pytest

from tests.faults import driver

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
