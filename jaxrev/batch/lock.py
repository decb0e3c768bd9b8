"""One batch run per output folder: an exclusive lock on ``OUT/.jaxrev-batch.lock``.

The lock is an ``flock`` on the file, which holds the owner's process id and host for the
message a second run prints. The kernel drops the lock when its process ends, however it ends,
so a lock file left by a dead process is simply taken over. A second run refuses
(:class:`FolderLockedError`) or, with ``wait=True`` (``jaxrev batch --wait``), waits its turn.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jaxrev.errors import OutputError
from jaxrev.files import describe_os_error, make_dir

LOCK_NAME = ".jaxrev-batch.lock"


class FolderLockedError(RuntimeError):
    """Another live run holds the output folder's lock."""

    def __init__(self, lock: Path, holder: str):
        self.lock = lock
        super().__init__(
            f"{lock.parent} is in use by another jaxrev batch run ({holder or 'unknown process'}; "
            f"lock file {lock}). Wait for it to finish, or rerun with --wait to wait for it"
        )


@contextmanager
def folder_lock(out_dir: str | Path, *, wait: bool = False, poll: float = 0.2) -> Iterator[Path]:
    """Hold the lock of ``out_dir`` for the ``with`` block (see the module docstring)."""
    path = make_dir(out_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputError(path, describe_os_error(err)) from None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    raise FolderLockedError(path, holder_of(fd)) from None
                time.sleep(poll)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder_of(fd: int) -> str:
    try:
        return os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        return ""


__all__ = ["LOCK_NAME", "FolderLockedError", "folder_lock"]
