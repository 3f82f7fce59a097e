"""How many examples each property runs, and that every run tries the same ones.

CI runs a fixed, derandomized set (no example database: nothing is written under the checkout,
and a failure seen once is seen on every run). `VOXBUS_PROPERTY_SCALE=<n>` runs n times as many,
drawn at random, for a longer search by hand (docs/security.md, "Bad input").
"""

import os

from hypothesis import HealthCheck, settings

_SCALE = int(os.environ.get("VOXBUS_PROPERTY_SCALE", "1") or "1")


def examples(count: int) -> settings:
    """Settings for a property of `count` examples (times the scale); no deadline: the machine is
    shared, so a slow example is no failure (a hang still is, through pytest's timeout)."""
    return settings(
        max_examples=count * max(1, _SCALE),
        deadline=None,
        derandomize=_SCALE <= 1,
        database=None,
        print_blob=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
