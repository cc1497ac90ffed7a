"""Settings for every test suite."""

from hypothesis import settings

# A 2-core machine running Airflow and the stack beside the tests: per-example deadlines only produce
# false failures there. Example counts stay as each test sets them.
settings.register_profile("loaded-machine", deadline=None)
settings.load_profile("loaded-machine")
