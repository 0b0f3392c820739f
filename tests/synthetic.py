"""Tiny generated test inputs: faces (smooth blobs on a gradient, so denoising is meaningful) and a crafted pickle."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np

from denoise_core.data import PRIVATE_TEST, PUBLIC_TEST, TRAINING, Splits


def smooth_faces(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 48, 48): a random gradient plus a few Gaussian blobs ("eyes", "mouth")."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32) / 47.0
    faces = np.empty((count, 48, 48), dtype=np.uint8)
    for index in range(count):
        a, b, c = rng.uniform(-0.4, 0.4, 3)
        image = 0.5 + a * xx + b * yy + c * xx * yy
        for _ in range(3):
            cy, cx, r, amp = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.05, 0.15), rng.uniform(-0.4, 0.4)
            image += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        faces[index] = np.clip(np.round(image * 255), 1, 254).astype(np.uint8)
    return faces


def smooth_usage(train: int, val: int, test: int) -> np.ndarray:
    return np.array([TRAINING] * train + [PUBLIC_TEST] * val + [PRIVATE_TEST] * test, dtype=np.int8)


def smooth_splits(train: int = 96, val: int = 32, test: int = 16, seed: int = 0) -> Splits:
    faces = smooth_faces(train + val + test, seed)
    return Splits(train=faces[:train], val=faces[train:train + val], test=faces[train + val:], test_in_training=np.zeros(test, dtype=bool),
                  val_in_training=np.zeros(val, dtype=bool))


class Payload:
    """What a crafted file carries: unpickling it would create ``marker``, so a test can tell whether it ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def tar_gz(csv: bytes) -> bytes:
    """Kaggle's archive: the CSV as fer2013/fer2013.csv in a gzipped tar."""
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("fer2013/fer2013.csv")
        info.size = len(csv)
        tar.addfile(info, io.BytesIO(csv))
    return archive.getvalue()
