"""The soak benchmark's quick mode (30 s of task processes with a VictoriaLogs outage): every store ends
up holding exactly what was sent. The full soak is ``python -m benchmarks.soak`` (results: benchmarks/SOAK.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]


def test_quick_soak_counts_are_exact() -> None:
    soak = subprocess.run([sys.executable, "-m", "benchmarks.soak", "--quick"], cwd=su.ROOT, capture_output=True,
                          text=True, timeout=600, check=False)
    assert soak.returncode == 0, soak.stdout + soak.stderr[-3000:]
    assert "every store exact" in soak.stdout
