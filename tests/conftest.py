"""Settings and fixtures for every test suite: the one `stack` fixture lives here."""

import pytest
from hypothesis import settings

from testkit import stackutil

# A 2-core machine running Airflow and the stack beside the tests: per-example deadlines only produce
# false failures there. Example counts stay as each test sets them.
settings.register_profile("loaded-machine", deadline=None)
settings.load_profile("loaded-machine")


@pytest.fixture(scope="session")
def stack() -> None:
    """The native stack, brought up once per session (builds missing binaries; idempotent)."""
    stackutil.ensure_stack()
