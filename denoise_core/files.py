"""Files written whole or not at all (an interruption or a full disk never leaves half a file behind), and .npz files
read back with every form of damage raising one of a known set of exceptions."""

from __future__ import annotations

import errno
import io
import logging
import os
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
            raise disk_full(path) from None
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


def disk_full(path: str | os.PathLike) -> DiskFull:
    """The one-line error for a full disk, naming the mount point that filled up and the file being written."""
    mount = Path(path).absolute()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    error = DiskFull(f"no space left on the device mounted at {mount} (writing {path}); free some space and run the command again")
    error.errno = errno.ENOSPC
    return error


def read_npz(source: Path | bytes, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The named arrays of an .npz file (or its bytes), read whole so that damage shows here; raises one of ``NPZ_ERRORS``."""
    stored = np.load(io.BytesIO(source) if isinstance(source, bytes) else source, allow_pickle=False)
    if not isinstance(stored, np.lib.npyio.NpzFile):
        raise ValueError("not an .npz archive")
    with stored:
        return {name: stored[name] for name in names}
