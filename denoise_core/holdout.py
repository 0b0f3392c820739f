"""The fixed noisy hold-out: test faces corrupted once, on the CPU, at a grid of noise conditions.

Every evaluation (study, report, benchmarks, model card) reads the same bytes: the set is generated with
per-condition seeds on the CPU, stored as uint8 with a SHA-256 checksum, and verified when loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from denoise_core.noise import NoiseSpec, corrupt, make_generator

DEFAULT_CONDITIONS = (
    "sp:0.05", "sp:0.1", "sp:0.2", "sp:0.3", "sp:0.4", "sp:0.5", "sp:0.6", "sp:0.7", "sp:0.8", "sp:0.9",
    "gauss:10", "gauss:15", "gauss:25", "gauss:35", "gauss:50",
    "sp:0.1+gauss:10", "sp:0.2+gauss:20", "sp:0.3+gauss:30",
)
DEFAULT_SEED = 2013


class HoldoutError(ValueError):
    """A stored hold-out does not match its checksum or its description."""


@dataclass(frozen=True)
class Holdout:
    clean: np.ndarray  # uint8 (N, 48, 48)
    noisy: np.ndarray  # uint8 (C, N, 48, 48), one slab per condition
    conditions: tuple[str, ...]
    seed: int
    checksum: str

    def noisy_for(self, condition: str) -> np.ndarray:
        return self.noisy[self.conditions.index(str(NoiseSpec.parse(condition)))]


def validate_conditions(conditions: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Hold-out conditions in canonical form (``none`` is the clean face); a bad one is a one-line error naming it.

    A condition is one fixed level: a range would score every face at another level, and a condition listed
    twice (in any spelling) would be scored twice.
    """
    if isinstance(conditions, str) or not isinstance(conditions, (list, tuple)):
        raise ValueError(f"hold-out conditions must be a list, e.g. [sp:0.1, gauss:25, sp:0.1+gauss:10], got {conditions!r}")
    canonical: list[str] = []
    for condition in conditions:
        try:
            spec = NoiseSpec.parse(condition)
        except (ValueError, AttributeError, TypeError) as error:
            raise ValueError(f"hold-out condition {condition!r} is not a noise condition ({error}); "
                             "valid ones look like sp:0.1, gauss:25, sp:0.1+gauss:10 or none") from None
        if spec.is_blind:
            raise ValueError(f"hold-out condition {condition!r} is a range; hold-out conditions are fixed levels, e.g. sp:0.1, gauss:25 or none")
        if str(spec) in canonical:
            raise ValueError(f"hold-out condition {condition!r} is listed twice (as {spec})")
        canonical.append(str(spec))
    return tuple(canonical)


def make_holdout(clean: np.ndarray, conditions: tuple[str, ...] = DEFAULT_CONDITIONS, seed: int = DEFAULT_SEED) -> Holdout:
    """Corrupt uint8 faces at each condition with a CPU generator seeded from (seed, condition)."""
    conditions = tuple(str(NoiseSpec.parse(c)) for c in conditions)
    images = torch.from_numpy(clean).float().div_(255.0)
    slabs = []
    for condition in conditions:
        generator = make_generator(seed * 1_000_003 + zlib.crc32(condition.encode()))
        noisy = corrupt(images, condition, generator)
        slabs.append(noisy.mul_(255.0).round_().to(torch.uint8).numpy())
    noisy = np.stack(slabs) if slabs else np.empty((0, *clean.shape), dtype=np.uint8)
    return Holdout(clean=clean, noisy=noisy, conditions=conditions, seed=seed, checksum=_checksum(clean, noisy, conditions, seed))


def save_holdout(holdout: Holdout, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as handle:
        np.savez(handle, clean=holdout.clean, noisy=holdout.noisy)
    os.replace(partial, path)
    meta = {"conditions": list(holdout.conditions), "seed": holdout.seed, "sha256": holdout.checksum, "faces": len(holdout.clean)}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")


def load_holdout(path: str | os.PathLike) -> Holdout:
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise HoldoutError(f"hold-out {path} (or its .json) is missing; regenerate it with make_holdout")
    meta = json.loads(meta_path.read_text())
    with np.load(path) as stored:
        clean, noisy = stored["clean"], stored["noisy"]
    conditions = tuple(meta["conditions"])
    checksum = _checksum(clean, noisy, conditions, int(meta["seed"]))
    if checksum != meta["sha256"]:
        raise HoldoutError(f"hold-out {path} fails its checksum ({checksum[:12]} != {meta['sha256'][:12]}): delete it to regenerate")
    return Holdout(clean=clean, noisy=noisy, conditions=conditions, seed=int(meta["seed"]), checksum=checksum)


def holdout_for(clean: np.ndarray, cache_dir: str | os.PathLike, conditions: tuple[str, ...] = DEFAULT_CONDITIONS, seed: int = DEFAULT_SEED) -> Holdout:
    """Load the hold-out for these faces, conditions and seed from ``cache_dir``, generating it once."""
    conditions = tuple(str(NoiseSpec.parse(c)) for c in conditions)
    key = hashlib.sha256(clean.tobytes() + json.dumps([list(conditions), seed]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"holdout-{key}.npz"
    if path.exists():
        return load_holdout(path)
    holdout = make_holdout(clean, conditions, seed)
    save_holdout(holdout, path)
    return holdout


def _checksum(clean: np.ndarray, noisy: np.ndarray, conditions: tuple[str, ...], seed: int) -> str:
    digest = hashlib.sha256(json.dumps([list(conditions), seed, list(noisy.shape)]).encode())
    digest.update(np.ascontiguousarray(clean).tobytes())
    digest.update(np.ascontiguousarray(noisy).tobytes())
    return digest.hexdigest()
