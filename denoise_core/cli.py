"""What every command line shares: logging set-up and one-line errors instead of tracebacks."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from denoise_core.checkpoint import CheckpointError
from denoise_core.data import DataError, DataNotFound
from denoise_core.holdout import HoldoutError

USER_ERRORS = (DataError, DataNotFound, CheckpointError, HoldoutError, FileExistsError, FileNotFoundError, ValueError)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")


def run_cli(main: Callable[[], int | None], program: str) -> None:
    """Run ``main``; a user error (bad data, bad flag, existing output) exits 2 with one line on stderr."""
    try:
        code = main()
    except USER_ERRORS as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(code or 0)
