"""Writing an output directory safely: refuse an existing one unless asked, build beside it, move into place.

A report or comparison is built in a scratch directory next to its destination and renamed at the end, so
an interrupted build never leaves half a report. ``--overwrite`` replaces only an output this program wrote: the
directory carries a marker file naming what wrote it, so a study, a model or a folder of the user's own files
given as ``--out`` is refused in one line instead of being deleted.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from denoise_core.errors import InputError, OutputExists

MARKER = ".facestudy-output"  # holds the kind of output ("report", "comparison") that this program wrote here
LEGACY_FILES = ("index.html", "summary.md")  # what every report and comparison wrote before the marker existed
USER_DATA = ("study.yaml", "trials.csv", "optuna.db", "best", "model.pt", "last.pt")  # never inside an output this program wrote


def written_here(out: Path, kind: str) -> bool:
    """True when ``out`` is a ``kind`` output this program wrote: its marker says so, or (written before the marker)
    it holds a report's pages and nothing of a study or a run."""
    marker = out / MARKER
    if marker.is_file():
        return marker.read_text().strip() == kind
    holds_user_data = any(next(out.rglob(name), None) is not None for name in USER_DATA)
    return all((out / name).is_file() for name in LEGACY_FILES) and not holds_user_data


def check_output(out: Path, overwrite: bool, kind: str = "report", inputs: tuple[Path, ...] = ()) -> None:
    """Refuse an ``out`` that exists (without ``--overwrite``), that this program did not write, or that holds an input."""
    for source in inputs:
        if source.resolve() == out.resolve() or out.resolve() in source.resolve().parents:
            raise InputError(f"--out {out} holds the input {source}; write the {kind} to another directory")
    if not out.exists() and not out.is_symlink():
        return
    if not overwrite:
        raise OutputExists(f"{out} exists; refusing to overwrite it (pass --overwrite to rebuild it)")
    if not out.is_dir() or out.is_symlink():
        raise OutputExists(f"--out {out} is {'a link' if out.is_symlink() else 'a file'}, not a {kind} directory; choose another --out")
    if not written_here(out, kind):
        raise OutputExists(f"{out} was not written by this program as a {kind} (no {MARKER} in it), so --overwrite will not replace it; "
                           "choose another --out, or move it away yourself")


def scratch_dir(out: Path, kind: str = "report") -> Path:
    work = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / MARKER).write_text(f"{kind}\n")
    return work


def publish(work: Path, out: Path, overwrite: bool, kind: str = "report") -> None:
    """Move the finished output into place; the old one is removed only now, only with --overwrite, only if it is ours."""
    check_output(out, overwrite, kind)
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
