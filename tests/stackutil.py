"""Moved to testkit.stackutil (shared by tests, benchmarks and the demo); this name stays for one release of
branches in flight."""

from testkit.stackutil import *  # noqa: F403
