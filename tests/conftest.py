"""Settings and fixtures for every test suite: the one `stack` fixture, and the PostgreSQL every real Airflow
of the session keeps its metadata in (a database each)."""

from collections.abc import Callable, Iterator

import pytest
from hypothesis import settings

from testkit import stackutil
from testkit.local_servers import LocalPostgres
from testkit.net import free_port

# A 2-core machine running Airflow and the stack beside the tests: per-example deadlines only produce
# false failures there. Example counts stay as each test sets them.
settings.register_profile("loaded-machine", deadline=None)
settings.load_profile("loaded-machine")


@pytest.fixture(scope="session")
def stack() -> None:
    """The native stack, brought up once per session (builds missing binaries; idempotent)."""
    stackutil.ensure_stack()


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    with LocalPostgres(port=free_port(25432)) as server:
        yield server


@pytest.fixture(scope="session")
def airflow_database(postgres) -> Callable[[str], str]:
    """A new PostgreSQL database for one Airflow: its SQLAlchemy URL. Not SQLite: there one writer locks the
    whole database, and Airflow's api-server waits for that lock on its event loop (testkit/airflow_local.py)."""

    def create(name: str) -> str:
        postgres.create_database(name)
        return postgres.sqlalchemy_url(name)

    return create
