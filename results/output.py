"""Writing an output directory safely: refuse an existing one unless asked, build beside it, move into place.

A report or comparison is built in a scratch directory next to its destination and renamed at the end, so
an interrupted build never leaves half a report, and an existing one is only replaced with ``--overwrite``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from denoise_core.errors import OutputExists


def check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExists(f"{out} exists; refusing to overwrite it (pass --overwrite to rebuild it)")


def scratch_dir(out: Path) -> Path:
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def publish(work: Path, out: Path, overwrite: bool) -> None:
    """Move the finished report into place; the old one is removed only now, and only with --overwrite."""
    check_output(out, overwrite)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
