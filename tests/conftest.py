"""Shared fixtures for the test suite."""

from __future__ import annotations

import os
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
