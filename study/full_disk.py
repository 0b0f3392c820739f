"""A disk that fills up during a study: one line, and a study that resumes, instead of every trial's traceback.

A trial that finds no room for its checkpoint raises ``DiskFull`` (``study.trial.whole_checkpoint``); the driver's own
writes (Tune's experiment state, the Optuna SQLite file, the searcher's state) raise ``OSError`` ENOSPC or SQLite's
SQLITE_FULL. Tune hands a trial's exception to no callback, only to its "Trial task failed" log record, so a filter
on Ray's loggers recognises a full disk: it stops the study as Ctrl-C does (SIGUSR1, on which Tune saves what it can
for a resume), keeps the first such error, which the study then ends with, and from then on drops Ray's warnings and
errors, which only tell the same story in tracebacks.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
from typing import Iterator

from denoise_core.errors import DiskFull
from denoise_core.files import disk_full
from study import optuna_db
from study.config import StudyConfig, resume_command

FULL = (errno.ENOSPC, errno.EDQUOT)
# Where Ray says what a full disk did: a failed trial, a failed copy into the storage, a failed save of Tune's state, the
# run's end ("Trials did not complete", "Stop signal received"), and a failed task's error that nobody read.
UNREAD_ERRORS = "ray._private.worker"
RAY_LOGGERS = ("ray.tune.execution.tune_controller", "ray.train._internal.syncer", "ray.tune.execution.experiment_state", "ray.tune.tune",
               UNREAD_ERRORS)


def full_disk_cause(error: BaseException | None) -> BaseException | None:
    """The full-disk error behind ``error``, through the exceptions that wrap it (Ray's task errors keep it as
    ``cause``, SQLAlchemy's as the cause), or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFull) or (isinstance(error, OSError) and error.errno in FULL):
            return error
        if getattr(error, "sqlite_errorname", None) == "SQLITE_FULL":
            return error
        cause = getattr(error, "cause", None)
        error = cause if isinstance(cause, BaseException) else error.__cause__ or error.__context__
    return None


def study_disk_full(cause: BaseException, config: StudyConfig) -> DiskFull:
    """The study's one line for a full disk: what filled up, and how to continue once there is room."""
    then = f"continue the study, saved up to there, with: {resume_command(config)}"
    if isinstance(cause, DiskFull) and hasattr(cause, "path"):
        return disk_full(cause.path, cause.needed, cause.quota, then=then)
    if isinstance(cause, OSError):
        return disk_full(cause.filename or config.study_uri, quota=cause.errno == errno.EDQUOT, then=then)
    return disk_full(optuna_db.storage_url(config).removeprefix("sqlite:///"), then=then)


@contextlib.contextmanager
def stop_on_a_full_disk(config: StudyConfig) -> Iterator[None]:
    """Around ``tuner.fit()``: a full disk in a trial or in the driver stops the study and ends the block with one ``DiskFull``."""
    found: list[BaseException] = []

    def said_by_ray(record: logging.LogRecord) -> bool:
        cause = full_disk_cause(record.exc_info[1] if record.exc_info else None)
        if cause is not None and not found:
            found.append(cause)
            if callable(signal.getsignal(signal.SIGUSR1)):  # Tune's stop handler (it has none outside the main thread)
                os.kill(os.getpid(), signal.SIGUSR1)
        return not found or record.levelno < logging.WARNING  # once the disk is full, what Ray says of it is the one line

    loggers = [logging.getLogger(name) for name in RAY_LOGGERS]
    for logger in loggers:
        logger.addFilter(said_by_ray)
    try:
        yield
    except Exception as error:
        cause = full_disk_cause(error)
        if cause is None and not found:  # after a full disk, Tune fails on its own half-written files: the same cause
            raise
        found.append(cause or found[0])
    finally:
        for logger in loggers:
            if not (found and logger.name == UNREAD_ERRORS):  # the failed trials' errors come again when Ray shuts down at exit
                logger.removeFilter(said_by_ray)
    if found:
        raise study_disk_full(found[0], config)
