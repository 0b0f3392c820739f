"""Files written whole or not at all (an interruption or a full disk never leaves half a file behind), and .npz files
read back with every form of damage raising one of a known set of exceptions."""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import zipfile
import zlib
from pathlib import Path

import numpy as np

from denoise_core.errors import NOT_WRITABLE, DiskFull, NotWritable, not_writable

NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)
"""What reading a damaged .npz raises: a truncated zip, a flipped byte (CRC), a broken .npy header, a missing array."""


def write_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, len(data), quota=error.errno == errno.EDQUOT) from None
        if error.errno in NOT_WRITABLE:
            raise not_writable(error.filename or path, error) from None
        raise
    return path


def write_cache(path: str | os.PathLike, data: bytes, log: logging.Logger) -> bool:
    """Write a cache entry whole; a cache that cannot be written (read-only, no permission) is one warning, and the
    command goes on without it. Returns whether the entry was written."""
    try:
        write_atomic(path, data)
    except NotWritable as error:
        log.warning("%s; going on without the cache (set $FACESTUDY_CACHE to a writable folder to keep it)", error)
        return False
    return True


def cache_writable(directory: str | os.PathLike, log: logging.Logger) -> bool:
    """Whether a cache folder takes new entries (one probe file, removed again); a warning when it does not."""
    probe = Path(directory) / f".write-probe.{os.getpid()}"
    if not write_cache(probe, b"", log):
        return False
    probe.unlink(missing_ok=True)
    return True


def disk_full(path: str | os.PathLike, needed: int | None = None, quota: bool = False, then: str = "run the command again") -> DiskFull:
    """The one-line error for a full disk (or a used-up quota), naming the mount point that filled up, the file being
    written and, when known, the space that file needs beside what is free; ``then`` is what to do once there is room."""
    mount = Path(path).absolute()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    room = "" if needed is None else f", which needs {byte_size(needed)}"
    if needed is not None and not quota:  # a quota's room is not the device's free space
        room += f" with {byte_size(shutil.disk_usage(mount).free)} free"
    what = "your disk quota is used up" if quota else "no space left"
    error = DiskFull(f"{what} on the device mounted at {mount} (writing {path}{room}); free some space and {then}")
    error.errno = errno.EDQUOT if quota else errno.ENOSPC
    error.path, error.needed, error.quota = str(path), needed, quota  # kept through a pickle (errno is not), to say it again elsewhere
    return error


def byte_size(count: int) -> str:
    """A byte count for people: ``512 B``, ``3.2 kB``, ``1.4 MB``, ``2.0 GB`` (powers of 1000, as ``df -H``)."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def read_npz(source: Path | bytes, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file (or its bytes), read whole so that damage shows here; raises one of ``NPZ_ERRORS``."""
    stored = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive")
    with stored:
        return {name: stored[name] for name in names}
