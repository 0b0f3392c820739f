"""Where a study's Optuna study lives: a real database, so that optuna-dashboard can watch it live.

SQLite in the study directory by default (``STUDY/optuna.db``), or a server database on a cluster
(``optuna_storage: postgresql://...``); the trials' image grids are artifacts in ``STUDY/optuna-artifacts``.
Only the driver writes them (``study.searcher``). Optuna never changes a finished trial, so the best model's
hold-out scores, measured after the last trial, are study attributes.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from denoise_core.errors import MissingFile, OutputExists, UserError, describe
from denoise_core.study_files import OPTUNA_ARTIFACTS, OPTUNA_DB
from study import storage
from study.config import StudyConfig, StudyConfigError, resume_command

TUNE_TRIAL_ID = "tune_trial_id"


def storage_url(config: StudyConfig) -> str:
    """``optuna_storage``, else SQLite in the study directory (a local one: SQLite cannot live in object storage)."""
    if config.optuna_storage:
        return config.optuna_storage
    if "://" in config.study_uri:
        raise StudyConfigError(f"storage {config.storage} is not a local directory, so the Optuna study cannot be a SQLite file in it; "
                               "pass --optuna-storage URL (a database server, e.g. postgresql://optuna@HEAD_IP/optuna; "
                               "cluster/cluster.yaml starts one on the head node)")
    return f"sqlite:///{config.study_uri}/{OPTUNA_DB}"


def artifact_uri(config: StudyConfig) -> str:
    return f"{config.study_uri}/{OPTUNA_ARTIFACTS}"


def open_storage(url: str):
    """An ``RDBStorage`` (tables created on first use), or a one-line error naming what is wrong with ``url``."""
    import optuna
    import sqlalchemy

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except ImportError:
        raise StudyConfigError(f"optuna_storage {url}: the Python driver for this database is not installed; "
                               "for PostgreSQL: pip install 'psycopg[binary]'") from None
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.DatabaseError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StudyConfigError(f"optuna_storage {url} cannot be opened: {first}") from None


class StorageUnreachable(UserError):
    """The study's database stopped answering (its server stopped, the network went): the study is saved for a resume."""


@contextlib.contextmanager
def answering(config: StudyConfig) -> Iterator[None]:
    """A database that stops answering mid-study ends the study with one line naming it, not the traceback that Tune
    and Optuna wrap it in (Optuna's blames "invalid data in the commit"); Tune has saved the study, so ``--resume`` continues it."""
    try:
        yield
    except Exception as error:
        lost = connection_error(error)
        if lost is None:
            raise
        raise StorageUnreachable(f"the Optuna storage {storage_url(config)} stopped answering mid-study ({describe(lost.orig or lost)}); "
                                 f"once it answers again, continue the study with: {resume_command(config)}") from None


def connection_error(error: BaseException | None) -> Any:
    """The database's own ``OperationalError`` behind ``error``, through the exceptions that wrap it, or None."""
    import sqlalchemy

    while error is not None and not isinstance(error, sqlalchemy.exc.OperationalError):
        error = error.__cause__ or error.__context__
    return error


def check_new(url: str, name: str) -> None:
    """A new study never joins or overwrites an Optuna study of the same name (on a shared server, say)."""
    if has_study(url, name):
        raise OutputExists(f"the Optuna storage {url} already holds a study named '{name}'; choose another --name "
                           "(or --resume the study of that name)")


def check_resumable(url: str, name: str) -> None:
    """A resumed study continues the Optuna study of its name in its own database: a SQLite file that was deleted, emptied,
    replaced or damaged, or a database without that study, is refused before Optuna writes to it."""
    import optuna
    import sqlalchemy

    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.is_file():
            raise MissingFile(f"{path} is missing: it holds study '{name}''s Optuna trials, without which it cannot be resumed; put it "
                              "back from a copy of the study, or start a new study")
        with open(path, "rb") as database:
            if database.read(16) != b"SQLite format 3\x00":
                raise StudyConfigError(f"{path} is not a SQLite database (emptied or replaced); put the study's own optuna.db back from a copy")
    try:
        names = optuna.study.get_all_study_names(open_storage(url))
    except sqlalchemy.exc.DatabaseError as error:
        raise StudyConfigError(f"the Optuna storage {url} cannot be read ({describe(error.orig or error)}); put the study's own database "
                               "back from a copy of the study") from None
    if name not in names:
        raise StudyConfigError(f"the Optuna storage {url} holds no study named '{name}' (it holds {', '.join(map(repr, names)) or 'none'}): "
                               "it is not this study's database; put the study's own back from a copy")


class StudyArtifactStore:
    """Optuna's artifact-store protocol over the study's own storage (a local folder or s3://), laid out as
    ``FileSystemArtifactStore`` lays out its files, so ``optuna-dashboard --artifact-dir STUDY/optuna-artifacts`` reads it."""

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def open_reader(self, artifact_id: str) -> BinaryIO:
        from optuna.artifacts.exceptions import ArtifactNotFound

        if not storage.exists(f"{self.uri}/{artifact_id}"):
            raise ArtifactNotFound(artifact_id)
        return io.BytesIO(storage.read_bytes(f"{self.uri}/{artifact_id}"))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        storage.write_bytes(f"{self.uri}/{artifact_id}", content_body.read())

    def remove(self, artifact_id: str) -> None:
        filesystem, path = storage.filesystem(f"{self.uri}/{artifact_id}")
        filesystem.delete_file(path)


def has_study(url: str, name: str) -> bool:
    """Whether ``url`` holds the Optuna study ``name`` (a study started before studies kept one does not); opens no new file."""
    import optuna

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
        return False
    return name in optuna.study.get_all_study_names(open_storage(url))


def record_best(url: str, name: str, tune_trial_id: str, holdout: Any) -> None:
    """The exported model's hold-out scores, as study attributes (the trial itself is finished, so Optuna keeps it as it was)."""
    import optuna

    if not has_study(url, name):
        return
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    numbers = [t.number for t in study.get_trials(deepcopy=False) if t.user_attrs.get(TUNE_TRIAL_ID) == tune_trial_id]
    study.set_user_attr("best_tune_trial_id", tune_trial_id)
    if numbers:
        study.set_user_attr("best_trial_number", numbers[0])
    study.set_user_attr("best_holdout", {row["condition"]: {"psnr": float(row["psnr"]), "ssim": float(row["ssim"])}
                                         for row in holdout.to_dict("records")})
