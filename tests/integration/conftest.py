"""Fixtures for integration tests (the `stack` fixture is tests/conftest.py's): `java_job_jar` builds the JVM
job of the recipe in docs/jobs.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.stackutil import build_java_job


@pytest.fixture(scope="session")
def java_job_jar() -> Path:
    """examples/jvm-job built with Maven (dependencies from Maven Central, cached in ~/.m2; about 2 min cold)."""
    return build_java_job()
