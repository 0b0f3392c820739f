"""One driver per study: a lock file beside the study directory, ``STORAGE/.NAME.lock``, held while the driver runs.

Two drivers with the same ``--name`` would both write the study's Tune state and Optuna study; the second is refused
before Ray starts, naming the first one's process. The lock is the kernel's (``flock``), so a killed driver leaves
no stale lock; the file itself stays (removing it would let a third driver lock a new file while a second holds the
old). Object storage (``s3://``) has no locks: there it is up to the user.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from denoise_core.errors import UserError


class StudyLocked(UserError):
    """Another driver is running the study of this name."""


def lock_path(study_uri: str) -> Path:
    study = Path(study_uri)
    return study.parent / f".{study.name}.lock"


@contextlib.contextmanager
def study_lock(study_uri: str) -> Iterator[None]:
    """Holds the study's lock for the block, or raises ``StudyLocked`` naming the driver that holds it."""
    if "://" in study_uri:
        yield
        return
    path = lock_path(study_uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StudyLocked(f"study '{Path(study_uri).name}' is being run by another driver (pid {holder}, lock {path}); wait for it "
                              "to end or stop it (Ctrl-C), then --resume, or choose another --name") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)
