"""A durable, bounded, private directory of OTLP payloads that could not be delivered yet.

Every payload is written here *before* it is sent and removed once the Collector accepted it, so a
process killed mid-export (or a Collector that never answers) loses nothing: the next task on the host,
or ``python -m otel_plugin replay``, sends it again. File states, by suffix:

- ``.pb``: ready for (re)delivery;
- ``.inflight-<pid>``: being sent by that process; reclaimed once that process is gone;
- ``.<name>.tmp-<pid>``: being written by that process; removed once that process is gone.

File names are ``<time_ns>-<random>-<size>.<signal>``: the size in the name lets the cap be enforced
without a ``stat`` per file. A small ledger file (``.size``, under ``flock``) keeps the total of the ready
files, so no flush lists or stats the whole directory however large the backlog is; the directory is
listed only when the ledger says the cap is exceeded (and then trimmed to 90 % of it, so that happens
rarely). A payload delivered at once never touches the ledger: the healthy path costs one file written
and removed.

The spool is an optimisation that may fail: ``write_inflight`` returns None when the directory cannot be
used (read-only filesystem, disk full, owned by another user) and the caller sends from memory; that is
logged once per process. Files are 0600 in a 0700 directory; symlinks, FIFOs and other special files are
never followed or opened (``O_NOFOLLOW``, ``O_NONBLOCK`` and an ``fstat`` check).

Renames are atomic, so two processes never send the same file at the same time. A process in another PID
namespace (the node agent draining the spools of Kubernetes pods) cannot tell whether a pid is alive: it
passes ``abandoned_after`` and takes over an in-flight file only once it is older than any send can last
(a send holds its file for one request; the rename that claimed it set the file's ctime).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_READY = ".pb"
_INFLIGHT = ".inflight-"
_TMP = ".tmp-"
_LEDGER = ".size"
# At most this many directory entries are looked at per claim or pending check: bookkeeping per flush does
# not grow with the backlog (a backlog is drained batch by batch).
SCAN_LIMIT = 2048
_TRIM_TO = 0.9  # after trimming, the spool holds at most this share of its cap
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_OPEN_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class SpoolUnusable(OSError):
    """The spool directory cannot be used safely (owned by someone else, not a directory)."""


@dataclass(frozen=True)
class Claimed:
    signal: str
    path: Path
    payload: bytes


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: exists, owned by someone else
        return True
    return True


def _size_of(base: str) -> int | None:
    """The payload size encoded in a file name (None for names written before sizes were encoded)."""
    stem = base.rsplit(".", 1)[0]
    parts = stem.split("-")
    return int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else None


class Spool:
    def __init__(self, directory: Path, max_bytes: int, abandoned_after: float | None = None) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.abandoned_after = abandoned_after
        self._checked_pid: int | None = None
        self._problem: str | None = None
        self._warned = False

    # -- the directory ---------------------------------------------------------------------------------

    def usable(self) -> bool:
        """Create or check the directory once per process: ours, a real directory, 0700."""
        if self._checked_pid == os.getpid():
            return self._problem is None
        self._checked_pid = os.getpid()
        self._problem = None
        try:
            self._prepare()
        except OSError as exc:
            self._problem = str(exc) if isinstance(exc, SpoolUnusable) else f"{type(exc).__name__}: {exc.strerror}"
        return self._problem is None

    def _prepare(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(self.directory, 0o700)
        info = os.lstat(self.directory)
        if stat.S_ISLNK(info.st_mode):
            info = os.stat(self.directory)  # an admin's symlinked directory is fine if it is ours
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolUnusable(f"{self.directory} is not a directory")
        if info.st_uid != os.geteuid():
            raise SpoolUnusable(
                f"{self.directory} belongs to uid {info.st_uid}, not to this process (uid {os.geteuid()}); "
                "refusing to use a spool another user can read or plant files in"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(self.directory, 0o700)

    def _fall_back(self, reason: str) -> None:
        if not self._warned:
            self._warned = True
            log.error("otel_plugin: spool %s cannot be used (%s): sending from memory; payloads that are not "
                      "accepted at once are lost until this is fixed", self.directory, reason)

    # -- one payload's life ----------------------------------------------------------------------------

    def write_inflight(self, signal: str, payload: bytes) -> Path | None:
        """Persist a payload about to be sent; the caller then calls ``done`` or ``release``.

        None when the spool cannot be written: the caller sends from memory (said once in the log).
        """
        if not self.usable():
            self._fall_back(self._problem or "unusable")
            return None
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:12]}-{len(payload)}.{signal}"
        path = self.directory / f"{name}{_INFLIGHT}{os.getpid()}"
        tmp = self.directory / f".{name}{_TMP}{os.getpid()}"
        try:
            fd = os.open(tmp, _OPEN_WRITE, 0o600)
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            os.rename(tmp, path)
        except OSError as exc:
            _unlink(tmp)  # never leave a half-written file behind, outside the cap
            self._fall_back(f"{type(exc).__name__}: {exc.strerror or exc}")
            return None
        return path

    def done(self, path: Path | None) -> None:
        """The payload at ``path`` (in flight, so not in the ledger) was delivered or dropped: forget it."""
        if path is not None:
            _unlink(path)

    def release(self, path: Path | None) -> None:
        """Give an undelivered payload back for later delivery, and keep the spool under its cap."""
        if path is None:
            return
        name = path.name.split(_INFLIGHT, 1)[0]
        try:
            os.rename(path, path.with_name(name + _READY))
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("otel_plugin: could not return %s to the spool (%s)", path.name, exc.strerror)
            return
        size = _size_of(name)
        if size is None:
            try:
                size = os.stat(path.with_name(name + _READY), follow_symlinks=False).st_size
            except OSError:
                size = 0
        if self._account(size) > self.max_bytes:
            self._trim()

    # -- redelivery ------------------------------------------------------------------------------------

    def _candidates(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """(base name, file name) of up to SCAN_LIMIT deliverable files, oldest first among them."""
        found: list[tuple[str, str]] = []
        me = os.getpid()
        try:
            entries = os.scandir(self.directory)
        except OSError:
            return found
        with entries:
            for seen, entry in enumerate(entries):
                if seen >= SCAN_LIMIT:
                    break
                name = entry.name
                if name.startswith("."):
                    self._sweep_tmp(name)
                    continue
                if name.endswith(_READY):
                    base = name[: -len(_READY)]
                elif _INFLIGHT in name:
                    base, _, pid = name.partition(_INFLIGHT)
                    if not pid.isdigit() or int(pid) == me or not self._abandoned(entry, int(pid)):
                        continue
                else:
                    continue
                if base.rsplit(".", 1)[-1] in skip:
                    continue
                try:
                    if not entry.is_file(follow_symlinks=False):  # symlink, FIFO, device: never opened
                        continue
                except OSError:
                    continue
                found.append((base, name))
        found.sort()
        return found

    def _abandoned(self, entry: os.DirEntry, pid: int) -> bool:
        if self.abandoned_after is None:
            return not _pid_alive(pid)
        try:
            return time.time() - entry.stat(follow_symlinks=False).st_ctime > self.abandoned_after
        except OSError:
            return False

    def _sweep_tmp(self, name: str) -> None:
        _, sep, pid = name.rpartition(_TMP)
        if sep and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _unlink(self.directory / name)

    def claim(self, skip: frozenset[str] = frozenset()) -> Iterator[Claimed]:
        """Claim up to SCAN_LIMIT deliverable files (signals in ``skip`` left alone), oldest first."""
        if not self.usable():
            return
        me = os.getpid()
        for base, name in self._candidates(skip):
            claimed = self.directory / f"{base}{_INFLIGHT}{me}"
            try:
                os.rename(self.directory / name, claimed)  # atomic: only one process wins a file
            except OSError:
                continue
            payload = _read_regular(claimed)
            if payload is None:
                continue
            if name.endswith(_READY):  # no longer ready: out of the ledger until released again
                self._account(-len(payload))
            yield Claimed(base.rsplit(".", 1)[-1], claimed, payload)

    def has_pending(self) -> bool:
        """Whether something may be waiting for delivery (looks at SCAN_LIMIT entries at most)."""
        return self.directory.is_dir() and bool(self._candidates())

    def pending(self) -> int:
        """How many payloads are ready (lists the whole directory: for the replay command, not flushes)."""
        try:
            with os.scandir(self.directory) as entries:
                return sum(1 for e in entries if e.name.endswith(_READY) and not e.name.startswith("."))
        except OSError:
            return 0

    # -- the cap ---------------------------------------------------------------------------------------

    def _account(self, delta: int, absolute: int | None = None) -> int:
        """Add ``delta`` bytes to the ledger (or set it to ``absolute``); return the new total (0 if the
        ledger cannot be used: the cap is then only enforced by the next listing)."""
        try:
            fd = os.open(self.directory / _LEDGER, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return 0
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return 0
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 32, 0)
            if absolute is not None:
                total = absolute
            elif not raw.strip():  # a new ledger (or a spool from before ledgers): count once
                total = self._recount()
            else:
                total = max(0, int(raw.strip()) + delta)
            os.pwrite(fd, f"{total:020d}\n".encode(), 0)
            return total
        except (OSError, ValueError):
            return 0
        finally:
            os.close(fd)  # releases the lock

    def _listing(self) -> list[tuple[str, int]]:
        """(name, size) of every ready payload file, oldest first."""
        files = []
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or not name.endswith(_READY):
                        continue
                    size = _size_of(name[: -len(_READY)])
                    if size is None:
                        try:
                            size = entry.stat(follow_symlinks=False).st_size
                        except OSError:  # claimed or delivered by another process meanwhile
                            continue
                    files.append((name, size))
        except OSError:
            pass
        files.sort()
        return files

    def _recount(self) -> int:
        return sum(size for _, size in self._listing())

    def _trim(self) -> None:
        """Drop the oldest ready payloads until the spool is under 90 % of its cap; reset the ledger."""
        files = self._listing()
        total = sum(size for _, size in files)
        dropped = 0
        for name, size in files:
            if total <= self.max_bytes * _TRIM_TO:
                break
            if _unlink(self.directory / name):
                total -= size
                dropped += 1
        self._account(0, absolute=total)
        if dropped:
            log.error("otel_plugin spool %s over its cap of %d bytes: dropped the %d oldest payloads",
                      self.directory, self.max_bytes, dropped)


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError:
        return False
    return True


def _read_regular(path: Path) -> bytes | None:
    """The file's bytes if it is a regular file; never follows a symlink or blocks on a FIFO."""
    try:
        fd = os.open(path, _OPEN_READ)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)
