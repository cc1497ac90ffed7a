"""Fail unless the running interpreter has exactly the pinned versions of a constraints file installed.

    .venv-af2/bin/python -m tests.oldest_versions tests/oldest-otel.txt

The Makefile runs it after installing .venv-af2 and before its tests, so the oldest-OpenTelemetry run cannot
silently test newer releases (pip would resolve a newer one if a pin stopped applying).
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


def mismatches(constraints: Path) -> list[str]:
    wrong = []
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, pinned = line.partition("==")
        try:
            installed = version(name.strip())
        except PackageNotFoundError:
            installed = "not installed"
        if installed != pinned.strip():
            wrong.append(f"{name.strip()}: pinned {pinned.strip()}, installed {installed}")
    return wrong


if __name__ == "__main__":
    wrong = mismatches(Path(sys.argv[1]))
    print("\n".join(wrong) or f"every pin of {sys.argv[1]} is installed")
    sys.exit(1 if wrong else 0)
