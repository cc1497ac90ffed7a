"""The Go tests of our own Collector processors (collector/*processor), run after the stack's build fetched
their modules (the `stack` fixture), with the module versions their go.sum pins."""

from __future__ import annotations

import os
import subprocess

import pytest

from testkit import stackutil as su

pytestmark = [pytest.mark.stack, pytest.mark.usefixtures("stack")]


@pytest.mark.parametrize("module", ["exemplarsprocessor", "restampprocessor"])
def test_go_tests_pass(module: str) -> None:
    env = {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}
    proc = subprocess.run(["go", "vet", "./..."], cwd=su.ROOT / "collector" / module, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = subprocess.run(["go", "test", "-count=1", "./..."], cwd=su.ROOT / "collector" / module, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok"), proc.stdout
