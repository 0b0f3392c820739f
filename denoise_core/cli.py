"""What every command line shares: logging set-up, and one line instead of a traceback for the errors a user can fix."""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from typing import Callable, NoReturn

from denoise_core.errors import NOT_WRITABLE, UserError
from denoise_core.files import disk_full


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, like every other user error of these programs."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Progress and warnings go to stdout; stderr holds only what ends a command (its one-line error).

    ``quiet`` keeps warnings only, for programs that print their own progress.
    """
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S", stream=sys.stdout)


def run_cli(main: Callable[[], int | None], program: str) -> None:
    """Run ``main``; a user error (bad data, bad flag, existing output, full disk, a read-only output) exits 2 with one line on stderr.

    Every other exception is a bug and keeps its traceback.
    """
    try:
        code = main()
    except UserError as error:
        fail(program, str(error))
    except OSError as error:
        if error.errno in NOT_WRITABLE and error.filename:
            fail(program, f"{error.filename}: {(error.strerror or 'permission denied').lower()}; choose a writable location or change its permissions")
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        fail(program, str(disk_full(error.filename or "the output", quota=error.errno == errno.EDQUOT)))
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)


def fail(program: str, message: str) -> None:
    print(f"{program}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(2) from None
