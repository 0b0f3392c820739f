"""A disk that fills up during a study or a run: one line naming the file and the room it needs, nothing half-written
left, and a study that stops at the first full disk and says how to resume."""

from __future__ import annotations

import errno
import logging
import re
import signal
import sqlite3
from collections import namedtuple
from pathlib import Path

import pytest
import sqlalchemy

from denoise_core.errors import DiskFull
from denoise_core.files import byte_size
from denoise_core.train import _append_history
from study.config import build_config
from study.full_disk import full_disk_cause, stop_on_a_full_disk
from study.trial import whole_checkpoint
from test_damaged import fill_disk

NEEDS = r"which needs [\d.]+ (B|kB|MB) with [\d.]+ (B|kB|MB|GB) free"
Usage = namedtuple("Usage", "total used free")


def test_byte_sizes_read_as_df_h_writes_them():
    assert [byte_size(n) for n in (0, 999, 1000, 1_900_000, 2_500_000_000)] == ["0 B", "999 B", "1.0 kB", "1.9 MB", "2.5 GB"]


def test_a_training_history_row_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    history = tmp_path / "history.csv"
    _append_history(history, {"epoch": 1, "val_psnr": 20.5})
    before = history.read_bytes()
    with monkeypatch.context() as patch:
        fill_disk(patch)
        with pytest.raises(DiskFull, match=rf"no space left .*writing {re.escape(str(history))}, {NEEDS}\); free some space"):
            _append_history(history, {"epoch": 2, "val_psnr": 21.0})
    assert history.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]
    _append_history(history, {"epoch": 2, "val_psnr": 21.0})
    assert history.read_text().splitlines() == ["epoch,val_psnr", "1,20.5", "2,21.0"]


def test_the_searchers_state_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from study.searcher import RecordingSearch

    config = build_config("smoke", assignments=[("storage", str(tmp_path)), ("name", "s")])
    searcher = RecordingSearch(config, f"sqlite:///{tmp_path}/optuna.db")
    state = tmp_path / "searcher-state-x.json"
    searcher.save(str(state))
    before = state.read_bytes()
    with monkeypatch.context() as patch:
        fill_disk(patch)
        with pytest.raises(DiskFull, match=NEEDS):
            searcher.save(str(state))
    assert state.read_bytes() == before and not list(tmp_path.glob("*.partial"))


def checkpoint_dir(tmp_path: Path, size: int) -> str:
    local = tmp_path / "local"
    local.mkdir()
    (local / "checkpoint.pt").write_bytes(b"x" * size)
    return str(local)


def test_a_checkpoint_is_not_copied_into_a_trial_without_the_room_it_needs(tmp_path, monkeypatch):
    trial = tmp_path / "trial_a"
    trial.mkdir()
    monkeypatch.setattr("shutil.disk_usage", lambda path: Usage(10**9, 10**9 - 5000, 5000))
    copied = []
    with pytest.raises(DiskFull, match=rf"writing {re.escape(str(trial))}/checkpoint\.pt, which needs 12\.0 kB with 5\.0 kB free"):
        with whole_checkpoint(checkpoint_dir(tmp_path, 12_000), str(trial)):
            copied.append(True)
    assert not copied and not any(trial.iterdir())


def test_a_checkpoint_copy_that_fills_the_disk_is_removed_and_the_last_whole_one_kept(tmp_path):
    trial = tmp_path / "trial_a"
    (trial / "checkpoint_000000").mkdir(parents=True)
    (trial / "checkpoint_000000" / "checkpoint.pt").write_bytes(b"whole")
    with pytest.raises(DiskFull, match=rf"writing {re.escape(str(trial))}/checkpoint\.pt, which needs 3 B"):
        with whole_checkpoint(checkpoint_dir(tmp_path, 3), str(trial)):
            (trial / "checkpoint_000001").mkdir()
            (trial / "checkpoint_000001" / "checkpoint.pt").write_bytes(b"ha")  # Ray's copy, cut short
            raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint_000000"]
    assert (trial / "checkpoint_000000" / "checkpoint.pt").read_bytes() == b"whole"


def test_other_errors_of_a_checkpoint_copy_are_left_alone(tmp_path):
    trial = tmp_path / "trial_a"
    trial.mkdir()
    with pytest.raises(PermissionError):
        with whole_checkpoint(checkpoint_dir(tmp_path, 3), str(trial)):
            raise PermissionError(errno.EACCES, "denied")


class TaskError(Exception):
    """As Ray's RayTaskError keeps a remote exception: as ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("task failed")
        self.cause = cause


def sqlite_full() -> sqlalchemy.exc.OperationalError:
    orig = sqlite3.OperationalError("database or disk is full")
    orig.sqlite_errorname = "SQLITE_FULL"
    try:
        try:
            raise orig
        except sqlite3.OperationalError as error:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, error) from error
    except sqlalchemy.exc.OperationalError as wrapped:
        return wrapped


def test_a_full_disk_is_found_behind_the_errors_that_wrap_it():
    disk = OSError(errno.ENOSPC, "No space left on device")
    assert full_disk_cause(TaskError(disk)) is disk
    assert full_disk_cause(TaskError(DiskFull("no space"))).args == ("no space",)
    assert full_disk_cause(sqlite_full()).args == ("database or disk is full",)
    assert full_disk_cause(OSError(errno.EDQUOT, "Disk quota exceeded")) is not None
    assert full_disk_cause(TaskError(OSError(errno.EACCES, "denied"))) is None and full_disk_cause(None) is None


def test_a_trial_that_fills_the_disk_stops_the_study_in_one_line_that_says_how_to_resume(tmp_path, monkeypatch, caplog):
    config = build_config("smoke", assignments=[("storage", str(tmp_path)), ("name", "s")])
    kills = []
    monkeypatch.setattr("os.kill", lambda pid, signum: kills.append(signum))
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: None)  # Tune's stop handler, while it runs
    controller, tune_log = logging.getLogger("ray.tune.execution.tune_controller"), logging.getLogger("ray.tune.tune")
    full = DiskFull("no space")
    full.path, full.needed, full.quota = str(tmp_path / "s" / "trial_a" / "checkpoint.pt"), 1_900_000, False
    with caplog.at_level(logging.INFO), pytest.raises(DiskFull) as stopped:
        with stop_on_a_full_disk(config):
            controller.error("Trial task failed for trial a", exc_info=TaskError(full))
            controller.error("Trial task failed for trial b", exc_info=TaskError(full))
            tune_log.warning("Stop signal received (e.g. via SIGINT/Ctrl+C), ending Ray Tune run.")
            raise EOFError("Ran out of input")  # Tune reading back its own half-written error file
    signal.signal(signal.SIGUSR1, previous)
    message = str(stopped.value)
    assert kills == [signal.SIGUSR1] and caplog.records == []
    assert re.fullmatch(rf"no space left on the device mounted at \S+ \(writing {re.escape(full.path)}, which needs 1\.9 MB with .* free\); free "
                        rf"some space and continue the study, saved up to there, with: python study/run.py --name s --storage {re.escape(str(tmp_path))} "
                        r"--resume", message), message


def test_a_driver_write_on_a_full_disk_ends_the_study_in_one_line_and_other_errors_pass(tmp_path):
    config = build_config("smoke", assignments=[("storage", str(tmp_path)), ("name", "s")])
    with pytest.raises(DiskFull, match=rf"writing {re.escape(str(tmp_path))}/s/optuna\.db\); free some space and continue the study"):
        with stop_on_a_full_disk(config):
            raise sqlite_full()
    with pytest.raises(DiskFull, match=r"writing /x/experiment_state\.json\); free some space and continue the study"):
        with stop_on_a_full_disk(config):
            raise TaskError(OSError(errno.ENOSPC, "No space left on device", "/x/experiment_state.json"))
    with pytest.raises(EOFError):
        with stop_on_a_full_disk(config):
            raise EOFError("a bug keeps its traceback")
    logging.getLogger("ray.tune.tune").warning("after the study, Ray's logs are its own again")
