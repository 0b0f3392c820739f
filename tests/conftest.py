"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_FER2013 = REPO_ROOT.parent / "shared" / "fer2013" / "fer2013.csv.gz"


@pytest.fixture(scope="session")
def fer2013_path() -> Path:
    """The real FER2013 file: ``$FER2013_PATH`` if set, else ``../shared/fer2013/fer2013.csv.gz``; skips if absent."""
    configured = os.environ.get("FER2013_PATH")
    path = Path(configured).expanduser() if configured else SHARED_FER2013
    if not path.exists():
        source = "$FER2013_PATH" if configured else "the default shared location"
        pytest.skip(f"real FER2013 data not available: {path} (from {source}) does not exist")
    return path


@pytest.fixture(autouse=True, scope="session")
def private_study_key(tmp_path_factory):
    """The studies' signing key (study.signing) in a temporary folder, never the user's own; subprocesses inherit it."""
    saved = os.environ.get("FACESTUDY_STUDY_KEY")
    os.environ["FACESTUDY_STUDY_KEY"] = str(tmp_path_factory.mktemp("key") / "study-key")
    yield
    if saved is None:
        os.environ.pop("FACESTUDY_STUDY_KEY", None)
    else:
        os.environ["FACESTUDY_STUDY_KEY"] = saved


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests are tiny: one intra-op thread avoids thread contention making them slow on a busy 2-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fer2013_slice(fer2013_path) -> bytes:
    """The header and the first 600 rows of each Usage of the real file, as CSV bytes (read once per session)."""
    from denoise_core.data import read_csv_head

    return read_csv_head(fer2013_path, 600)


QUIET_RAY = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@pytest.fixture(scope="module")
def study_env(tmp_path_factory, fer2013_slice):
    """A data slice, a private cache and one quiet local Ray instance."""
    ray = pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("study")
    data = root / "fer2013-slice.csv"
    data.write_bytes(fer2013_slice)
    env = {**QUIET_RAY, "FACESTUDY_CACHE": str(root / "cache")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=10**8)
    yield {"data": data, "storage": root / "studies", "root": root}
    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass
class PostgresServer:
    """A throwaway PostgreSQL server on a loopback port, run as ``user`` (the server refuses to run as root)."""

    bin_dir: Path
    data_dir: Path
    port: int
    as_user: list[str]  # the command prefix that runs a server program as the unprivileged user

    def url(self, database: str = "optuna") -> str:
        return f"postgresql://optuna@127.0.0.1:{self.port}/{database}"

    def pg_ctl(self, *args: str) -> None:
        subprocess.run([*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w", *args],
                       check=True, capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir} -c fsync=off -c full_page_writes=off"
        self.pg_ctl("-l", str(self.data_dir / "server.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-m", mode, "stop")

    def running(self) -> bool:
        status = [*self.as_user, str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "status"]
        return subprocess.run(status, capture_output=True, timeout=60).returncode == 0


def postgres_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's programs (``/usr/lib/postgresql/VERSION/bin``), else those on PATH."""
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    on_path = shutil.which("initdb")
    return debian[-1].parent if debian else Path(on_path).parent if on_path else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server with an empty database ``optuna``, owned by the role ``optuna`` (no password, loopback only),
    in a temporary data directory; stopped and removed at the end. Skips, saying why, where it cannot run."""
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed: pip install -e '.[postgres]'")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb in /usr/lib/postgresql/*/bin or on PATH): apt-get install postgresql")
    as_user: list[str] = []
    data_dir = Path(tempfile.mkdtemp(prefix="facestudy-postgres-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("the tests run as root and there is no 'postgres' user to run the PostgreSQL server as")
        os.chown(data_dir, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PostgresServer(bin_dir=bin_dir, data_dir=data_dir, port=free_port(), as_user=as_user)
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "optuna", "--auth=trust", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True, text=True, timeout=120)
        server.start()
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(server.port), "-U", "optuna", "optuna"],
                       check=True, capture_output=True, text=True, timeout=60)
        yield server
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(data_dir, ignore_errors=True)
