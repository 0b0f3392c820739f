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
