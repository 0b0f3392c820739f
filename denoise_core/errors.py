"""The errors a user can fix. Command lines print these as one line; any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import errno
import os


class UserError(Exception):
    """A mistake in what the user gave (a flag, a setting, a file) or a problem of their machine (a full disk)."""


class InputError(UserError, ValueError):
    """A value, flag, setting or file content that is not valid; the message says what would be."""


class MissingFile(UserError, FileNotFoundError):
    """A file or directory the user named, or that a step needs, does not exist."""


class OutputExists(UserError, FileExistsError):
    """Writing would replace something the user made; the message says how to write elsewhere."""


class DiskFull(UserError, OSError):
    """The disk filled up while writing; nothing half-written is left behind."""


class NotWritable(UserError, PermissionError):
    """A path the user named, or a cache, cannot be written: a read-only folder or file system, or no permission."""


def not_writable(path: str | os.PathLike, error: OSError) -> NotWritable:
    """The one-line error for an output that cannot be written, naming the path and why (read-only, no permission)."""
    reason = "the file system is read-only" if error.errno == errno.EROFS else "permission denied"
    failed = NotWritable(f"cannot write {path}: {reason}; choose a writable location or change its permissions")
    failed.errno = error.errno
    return failed


NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
"""The errnos of a write refused by the file system (as opposed to a full disk, or a bug)."""


def describe(error: BaseException) -> str:
    """The first line of an exception's message (its type if it has none): the cause inside a one-line error."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(" :") if lines else type(error).__name__
