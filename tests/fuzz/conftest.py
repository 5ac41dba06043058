"""The fuzz suite's Hypothesis profiles and the RSA keys its messages are made with.

Profiles, chosen with ``HYPOTHESIS_PROFILE`` (``ci`` when unset):

* ``ci``: a small fixed budget, derandomized (the same examples on every run) and without an
  example database, so the suite is reproducible and quick (under a minute on two cores);
* ``fuzz`` (``make fuzz``): 5000 examples a test, random, failures kept in ``.hypothesis/`` and
  replayed first on the next run; a test may then take minutes, so the suite's tests get a longer
  timeout than the project's 120 s.

RSA key generation is slow, so each key is made once per session.  Hypothesis re-runs a test body
for every example, so fixtures used by ``@given`` tests are session- or module-scoped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fuzz_support import CI_EXAMPLES, FUZZ_EXAMPLES
from hypothesis import HealthCheck, settings

from pure_fixtures import backend_key, guest_key, lock_key

__all__ = ["backend_key", "guest_key", "lock_key"]  # fixtures, registered by being imported

PROFILE_VARIABLE = "HYPOTHESIS_PROFILE"
PROFILE = os.environ.get(PROFILE_VARIABLE, "ci")
FUZZ_TIMEOUT_S = 3600
# Examples that make RSA signatures, or a CLI call, are slower than Hypothesis expects.
_SLOW_IS_EXPECTED = [HealthCheck.too_slow]

settings.register_profile(
    "ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_EXPECTED,
)
settings.register_profile(
    "fuzz",
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_EXPECTED,
)
settings.load_profile(PROFILE)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under the ``fuzz`` profile, the fuzz tests (only they) may run for up to an hour each."""
    if PROFILE != "fuzz":
        return
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here):
            item.add_marker(pytest.mark.timeout(FUZZ_TIMEOUT_S))
