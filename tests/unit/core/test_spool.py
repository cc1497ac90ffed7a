"""The spool's weak spots from issue 19 (otel_plugin.core.spool), each injected for real: a directory that
cannot be written (file-size limit, a file in the way, another owner), permissions, symlinks and FIFOs,
stale temporary files, a backlog of tens of thousands of files, and a file claimed by another process
while the cap is enforced. The spool is an optimisation: when it fails, exports go from memory."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from otel_plugin.core import spool as spool_module
from otel_plugin.core import transport
from otel_plugin.core.spool import Spool

from .test_transport import Recorder, sender

# Tens of thousands of files, as in the reproduction, where a flush's cost shows (the exit tests);
# the structural tests need far fewer.
BACKLOG = 20_000
SMALL_BACKLOG = 2_000


@pytest.fixture
def server():
    srv = Recorder()
    yield srv
    srv.close()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def backlog(directory: Path, count: int, signal: str = "logs", size: int = 40) -> None:
    """``count`` ready payloads as an older plugin version (or a long outage) left them."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i in range(count):
        (directory / f"{i + 1:020d}-{i:012x}.{signal}.pb").write_bytes(b"x" * size)


# --- 1. a spool that cannot be written ------------------------------------------------------------------


def test_a_spool_that_cannot_be_written_sends_from_memory_and_leaves_no_tmp(server: Recorder, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 100 bytes fail (EFBIG), as a full disk does (ENOSPC)."""
    spool_dir = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import logging, resource, signal, sys
        from tests.unit.core.test_transport import sender
        from pathlib import Path
        logging.basicConfig(level=logging.WARNING)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        send = sender({server.url!r}, Path({str(spool_dir)!r}))
        print(send.send(b"p" * 1000), send.send(b"q" * 1000))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).parents[3])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]
    assert [body for _, body in server.requests] == [b"p" * 1000, b"q" * 1000]
    assert [f for f in files(spool_dir) if not f.startswith(".size")] == []  # no half-written .tmp
    assert done.stderr.count("sending from memory") == 1, done.stderr  # said once


def test_a_file_where_the_spool_should_be_does_not_stop_exports(server: Recorder, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "blocker").write_text("not a directory")
    send = sender(server.url, tmp_path / "blocker" / "spool")
    assert send.send(b"one") and send.send(b"two")
    assert [body for _, body in server.requests] == [b"one", b"two"]
    assert sum("sending from memory" in r.getMessage() for r in caplog.records) == 1


def test_a_spool_directory_owned_by_another_user_is_refused(server: Recorder, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o777)
    os.chown(spool_dir, 65534, 65534)  # planted beforehand by "nobody"
    server.status = 503
    send = sender(server.url, spool_dir)
    assert not send.send(b"payload")
    assert files(spool_dir) == []  # nothing written where another user can read or plant files
    assert len(server.requests) == 1  # sent from memory all the same
    assert any("belongs to uid 65534" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)


# --- 5. permissions, symlinks, special files --------------------------------------------------------------


def test_spool_files_are_private(server: Recorder, tmp_path: Path) -> None:
    server.status = 503
    old = os.umask(0o022)
    try:
        sender(server.url, tmp_path / "spool").send(b"payload")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
    (kept,) = [p for p in (tmp_path / "spool").iterdir() if p.name.endswith(".pb")]
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_a_loose_spool_directory_of_ours_is_tightened(server: Recorder, tmp_path: Path) -> None:
    (tmp_path / "spool").mkdir(mode=0o755)
    os.chmod(tmp_path / "spool", 0o755)
    sender(server.url, tmp_path / "spool").send(b"payload")
    assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700


def test_symlinks_are_never_followed(server: Recorder, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    secret = tmp_path / "etc-shadow"
    secret.write_bytes(b"root:secret-hash")
    (spool_dir / "00000000000000000001-aaaaaaaaaaaa.logs.pb").symlink_to(secret)
    delivered = transport.replay(Spool(spool_dir, 2**20), {"logs": sender(server.url, spool_dir)},
                                 time.monotonic() + 2)
    assert server.requests == [] and not delivered
    assert secret.read_bytes() == b"root:secret-hash"


def test_a_fifo_in_the_spool_does_not_hang_replay_past_its_timeout(server: Recorder, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    os.mkfifo(spool_dir / "00000000000000000001-aaaaaaaaaaaa.logs.pb")
    (spool_dir / "00000000000000000002-bbbbbbbbbbbb.logs.pb").write_bytes(b"real")
    send = sender(server.url, spool_dir)
    thread = threading.Thread(target=transport.replay, args=(send.spool, {"logs": send}, time.monotonic() + 1),
                              daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "replay hung on a FIFO"
    assert [body for _, body in server.requests] == [b"real"]


def test_a_temporary_file_of_a_killed_writer_is_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    stale = spool_dir / f".00000000000000000001-aaaaaaaaaaaa-9.logs.tmp-{int(dead.stdout)}"
    stale.write_bytes(b"half-writ")
    list(Spool(spool_dir, 2**20).claim())
    assert not stale.exists()


# --- 2. a large backlog -----------------------------------------------------------------------------------


def test_bookkeeping_per_payload_does_not_list_the_directory(server: Recorder, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    spool_dir = tmp_path / "spool"
    backlog(spool_dir, SMALL_BACKLOG)
    server.status = 503
    send = sender(server.url, spool_dir)
    send.spool.usable()
    send.spool._account(0)  # the ledger is created (one count) on first use
    listings = []
    real_scandir, real_iterdir = os.scandir, Path.iterdir
    monkeypatch.setattr(os, "scandir", lambda *a: listings.append(a) or real_scandir(*a))
    monkeypatch.setattr(Path, "iterdir", lambda self: listings.append(self) or real_iterdir(self))
    for i in range(5):
        assert not send.send(b"p%d" % i)
    assert listings == []


def test_a_large_backlog_drains_in_bulk(server: Recorder, tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    backlog(spool_dir, SMALL_BACKLOG)
    send = sender(server.url, spool_dir)
    delivered = transport.replay(send.spool, {"logs": send}, time.monotonic() + 30)
    assert delivered == SMALL_BACKLOG
    assert sum(len(body) for _, body in server.requests) == SMALL_BACKLOG * 40
    assert len(server.requests) <= SMALL_BACKLOG // 256 + 5  # batches, not one request per file
    assert [f for f in files(spool_dir) if not f.startswith(".")] == []


def test_cap_enforcement_tolerates_files_claimed_meanwhile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process claims (renames) a file between the listing and its stat."""
    spool_dir = tmp_path / "spool"
    backlog(spool_dir, 10, size=1000)  # names without sizes: the cap has to stat them
    spool = Spool(spool_dir, max_bytes=5000)
    real_stat = Path.stat

    def vanishing_stat(self: Path, *args: object, **kwargs: object) -> os.stat_result:
        if self.name.startswith("00000000000000000003"):
            raise FileNotFoundError(self)
        return real_stat(self, *args, **kwargs)

    real_scandir = os.scandir

    class VanishingEntries:
        def __init__(self, path: object) -> None:
            self.inner = real_scandir(path)

        def __enter__(self) -> VanishingEntries:
            return self

        def __exit__(self, *exc: object) -> None:
            self.inner.close()

        def __iter__(self):
            for entry in self.inner:
                if entry.name.startswith("00000000000000000003"):
                    os.unlink(entry.path)  # claimed and delivered by another process just now
                yield entry

    monkeypatch.setattr(Path, "stat", vanishing_stat)
    monkeypatch.setattr(os, "scandir", VanishingEntries)
    spool.release(spool.write_inflight("logs", b"n" * 1000))
    kept = sum(p.stat().st_size for p in spool_dir.iterdir() if p.name.endswith(".pb"))
    assert kept <= 5000


def test_scan_limit_bounds_each_claim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "SCAN_LIMIT", 100)
    spool_dir = tmp_path / "spool"
    backlog(spool_dir, 300)
    assert len(list(Spool(spool_dir, 2**30).claim())) == 100
