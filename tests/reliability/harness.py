"""Moved to testkit.harness (the soak benchmark uses it too); this name stays for branches in flight."""

from testkit.harness import *  # noqa: F403
