"""A durable, bounded directory of OTLP payloads that could not be delivered yet.

Every payload is written here *before* it is sent and removed once the Collector accepted it, so a
process killed mid-export (or a Collector that never answers) loses nothing: the next task on the host,
or ``python -m otel_plugin replay``, sends it again. File states, by suffix:

- ``.pb``: ready for (re)delivery;
- ``.inflight-<pid>``: being sent by that process; reclaimed once that process is gone.

Renames are atomic, so two processes never send the same file at the same time.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

_READY = ".pb"
_INFLIGHT = ".inflight-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    return True


class Spool:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def write_inflight(self, signal: str, payload: bytes) -> Path:
        """Persist a payload about to be sent; the caller then calls ``done`` or ``release``."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.{signal}"
        path = self.directory / f"{name}{_INFLIGHT}{os.getpid()}"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(payload)
        tmp.replace(path)
        return path

    @staticmethod
    def done(path: Path) -> None:
        path.unlink(missing_ok=True)

    def release(self, path: Path) -> None:
        """Give an undelivered payload back for later delivery, and keep the spool under its cap."""
        name = path.name.split(_INFLIGHT, 1)[0]
        try:
            path.replace(path.with_name(name + _READY))
        except FileNotFoundError:
            return
        self._enforce_cap()

    def claim(self) -> Iterator[tuple[str, Path, bytes]]:
        """Yield (signal, inflight path, payload) for each deliverable file, oldest first."""
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.iterdir()):
            name = path.name
            if name.endswith(_READY):
                base = name[: -len(_READY)]
            elif _INFLIGHT in name:
                base, _, pid = name.partition(_INFLIGHT)
                if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
                    continue
            else:
                continue
            claimed = path.with_name(f"{base}{_INFLIGHT}{os.getpid()}")
            try:
                path.replace(claimed)  # atomic: only one process wins a file
                payload = claimed.read_bytes()
            except FileNotFoundError:
                continue
            yield base.rsplit(".", 1)[-1], claimed, payload

    def pending(self) -> int:
        if not self.directory.is_dir():
            return 0
        return sum(1 for p in self.directory.iterdir() if p.name.endswith(_READY))

    def _enforce_cap(self) -> None:
        files = sorted(p for p in self.directory.iterdir() if p.name.endswith(_READY))
        sizes = {p: p.stat().st_size for p in files}
        total = sum(sizes.values())
        dropped = 0
        for path in files:
            if total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= sizes[path]
            dropped += 1
        if dropped:
            log.error("otel_plugin spool %s over its cap of %d bytes: dropped the %d oldest payloads",
                      self.directory, self.max_bytes, dropped)
