"""One training run per output directory: an exclusive lock on a file in it, held by the kernel.

`flock` locks belong to the open file, so the kernel drops the lock when the process ends however it
ends (`kill -9` included): a dead run never leaves a stale lock. The file stays in the directory
between runs (removing it would let two runs lock two different files); it holds the last holder's
pid and command line, so a refusal can name the running process.
"""
import contextlib
import fcntl
import os
import shlex
import sys
import tempfile
from pathlib import Path

NAME = ".lock"


class Unusable(Exception):
    """A run directory that cannot be made, written or locked; the message says why."""


class Locked(Unusable):
    """Another process holds the directory's lock; the message names it."""


@contextlib.contextmanager
def claim(directory):
    """Hold the lock of run directory `directory` (created if needed, checked writable) for the
    `with` block; Unusable, saying why, when it cannot be had."""
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Unusable(f"cannot create output directory {directory}: {e.strerror or e}") from None
    with contextlib.ExitStack() as stack:
        try:
            tempfile.TemporaryFile(dir=directory).close()
            path = stack.enter_context(hold(directory))
        except OSError as e:
            raise Unusable(f"cannot write in {directory}: {e.strerror or e}") from None
        yield path


@contextlib.contextmanager
def hold(directory):
    """Hold the exclusive lock of `directory` for the `with` block; Locked if another process has it.
    OSError when the lock file cannot be opened."""
    path = Path(directory) / NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Locked(f"{directory} is in use by another charrnn train ({_holder(fd)}); wait for it to "
                         f"finish or choose another --out") from None
        _write_holder(fd)
        yield path
    finally:
        os.close(fd)  # releases the lock


def _write_holder(fd):
    """Record this process in the lock file: written over the old line, then cut to length, so a
    reader never sees an empty file. Best effort: a full disk does not stop the run."""
    line = f"pid {os.getpid()}: {shlex.join(sys.argv)}\n".encode("utf-8", "replace")
    with contextlib.suppress(OSError):
        os.pwrite(fd, line, 0)
        os.ftruncate(fd, len(line))


def _holder(fd):
    """`pid 1234: charrnn train ...` as the holder wrote it, shortened to one line."""
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace").splitlines()
    line = text[0].strip() if text else ""
    if not line.startswith("pid "):
        return "pid unknown"
    return line if len(line) <= 160 else line[:157] + "..."
