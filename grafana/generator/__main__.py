"""``python -m grafana.generator [--check]``: write grafana/ from code, or check it is up to date."""

from __future__ import annotations

import argparse
import sys

from .outputs import REGENERATE, generate, stale, write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grafana.generator", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report files that differ; exit 1 if any")
    args = parser.parse_args(argv)
    files = generate()
    if args.check:
        behind = stale(files)
        for path in behind:
            print(f"grafana/{path} is not what the generator writes", file=sys.stderr)
        if behind:
            print(f"run: {REGENERATE}", file=sys.stderr)
        return 1 if behind else 0
    for path in write(files):
        print(f"wrote grafana/{path}")
    print(f"{len(files)} files up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
