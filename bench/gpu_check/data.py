"""The faces the GPU check trains on: real FER2013 faces packed small enough to travel with the tree, or
synthetic smooth faces where only the speed counts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from bench import REPO_ROOT
from denoise_core.data import PRIVATE_TEST, TRAINING, Faces, Splits, load_fer2013


PACK_TRAIN_FACES = 13_000  # keeps the packed file under PACK_LIMIT_BYTES with FER2013's 7,177 test faces
PACK_LIMIT_BYTES = 45e6


def pack_faces(images: np.ndarray, usage: np.ndarray, train_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Every PublicTest and PrivateTest face, the first ``train_faces`` Training faces, and every Training face that
    is a copy of a PrivateTest face, in file order: ``split_faces`` then flags the same test faces as on the whole
    file, so the hold-out (``test_unique``) is the one every other report scores."""
    training = usage == TRAINING
    test_bytes = {image.tobytes() for image in images[usage == PRIVATE_TEST]}
    copies = np.zeros(len(images), dtype=bool)
    copies[training] = [image.tobytes() in test_bytes for image in images[training]]
    keep = ~training | (np.cumsum(training) <= train_faces) | copies
    return images[keep], usage[keep]


def without_constant(images: np.ndarray, usage: np.ndarray, source: str) -> Faces:
    flat = images.reshape(len(images), -1)
    constant = flat.min(axis=1) == flat.max(axis=1)
    return Faces(images=images[~constant], usage=usage[~constant], source=source, dropped_constant=int(constant.sum()))


def read_faces_npz(path: Path) -> Faces:
    """``images`` (N, 48, 48) uint8 and ``usage`` (N,) int8, as in the parse cache and in ``--pack-data`` files."""
    with np.load(path) as stored:
        if "images" not in stored or "usage" not in stored:
            raise SystemExit(f"bench/gpu.py: {path} holds {sorted(stored.files)}; expected arrays 'images' and 'usage'")
        images, usage = stored["images"], stored["usage"]
    if images.dtype != np.uint8 or images.shape[1:] != (48, 48) or usage.shape != (len(images),):
        raise SystemExit(f"bench/gpu.py: {path}: expected images (N, 48, 48) uint8 and usage (N,), "
                         f"got {images.shape} {images.dtype} and {usage.shape}")
    return without_constant(images, usage.astype(np.int8), str(path))


def pack_data(source: Path, target: Path, train_faces: int) -> int:
    """Write the compact file for travel; returns its size in bytes."""
    faces = read_faces_npz(source) if source.suffix == ".npz" else load_fer2013(source)
    images, usage = pack_faces(faces.images, faces.usage, train_faces)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:  # a file handle, so numpy adds no second .npz suffix
        np.savez_compressed(handle, images=images, usage=usage.astype(np.int8))
    size = target.stat().st_size
    counts = np.bincount(usage, minlength=3)
    print(f"wrote {target}: {len(images)} faces ({counts[0]} Training, {counts[1]} PublicTest, {counts[2]} PrivateTest), "
          f"{size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)")
    if size > PACK_LIMIT_BYTES:
        print(f"warning: over {PACK_LIMIT_BYTES / 1e6:.0f} MB; pass a smaller --train-faces so the carried tree stays under 64 MiB")
    if target.resolve().is_relative_to(REPO_ROOT) and subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=REPO_ROOT).returncode != 0:
        print(f"warning: {target} is inside the repository and not git-ignored; keep data out of commits")
    return size


def smooth_faces(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 48, 48): a random gradient plus three Gaussian blobs, like tests/synthetic.py, vectorised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32) / np.float32(47.0)
    faces = np.empty((count, 48, 48), dtype=np.uint8)
    for start in range(0, count, 4096):
        n = min(4096, count - start)
        a, b, c = rng.uniform(-0.4, 0.4, (3, n, 1, 1)).astype(np.float32)
        image = 0.5 + a * xx + b * yy + c * xx * yy
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, (2, n, 1, 1)).astype(np.float32)
            radius, amplitude = rng.uniform(0.05, 0.15, (n, 1, 1)).astype(np.float32), rng.uniform(-0.4, 0.4, (n, 1, 1)).astype(np.float32)
            image += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius * radius))
        faces[start:start + n] = np.clip(np.round(image * 255), 1, 254).astype(np.uint8)
    return faces


def synthetic_splits(train: np.ndarray, val: np.ndarray) -> Splits:
    return Splits(train=train, val=val, test=val[:0], test_in_training=np.zeros(0, dtype=bool), val_in_training=np.zeros(len(val), dtype=bool))

