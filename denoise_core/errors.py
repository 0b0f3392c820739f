"""The errors a user can fix. Command lines print these as one line; any other exception is a bug and keeps its traceback."""

from __future__ import annotations


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


def describe(error: BaseException) -> str:
    """The first line of an exception's message (its type if it has none): the cause inside a one-line error."""
    lines = str(error).strip().splitlines()
    return lines[0].rstrip(" :") if lines else type(error).__name__
