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
