"""The README's install works for a user today: a wheel built from this checkout installs into a FRESH venv
beside Airflow (with the oldest supported OpenTelemetry, tests/oldest-otel.txt, so the floors are real) and
`airflow plugins` lists the plugin. The wheel carries the license and the one version (otel_plugin.__version__).

Needs PyPI (pip's cache, warm after `make venv`, makes it quick); run it outside a network namespace.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import otel_plugin

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = "apache-airflow==3.3.2"


def run(args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, capture_output=True, text=True, timeout=1800, check=False, **kwargs)  # type: ignore[call-overload]
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_wheel_installs_beside_airflow_and_registers_the_plugin(tmp_path: Path) -> None:
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(ROOT)])
    (wheel,) = (tmp_path / "dist").glob("airflow_otel_plugin-*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(whl.read(meta_name))
    assert meta["Version"] == otel_plugin.__version__
    assert meta["License-Expression"] == "Apache-2.0"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    requires = meta.get_all("Requires-Dist")
    assert "opentelemetry-api>=1.27" in requires and "opentelemetry-exporter-otlp-proto-common>=1.27" in requires
    assert not [n for n in names if n.startswith("tests/")]

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    run([*pip, AIRFLOW, str(wheel), "-c", str(ROOT / "tests" / "oldest-otel.txt")])
    home = tmp_path / "airflow-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "OTEL_", "PYTHON"))}
    env.update({"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "false"})
    listed = run([str(venv / "bin" / "airflow"), "plugins"], env=env, cwd=tmp_path)
    assert "otel_plugin" in listed.stdout, listed.stdout
    # The installed copy, not this checkout, is what Airflow loaded.
    where = run([str(venv / "bin" / "python"), "-c", "import otel_plugin; print(otel_plugin.__file__)"], cwd=tmp_path)
    assert str(venv) in where.stdout
