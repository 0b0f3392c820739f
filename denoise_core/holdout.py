"""The fixed noisy hold-out: test faces corrupted once, on the CPU, at a grid of noise conditions.

Every evaluation (study, report, benchmarks, model card) reads the same bytes: the set is generated with
per-condition seeds on the CPU, stored as uint8 with a SHA-256 checksum, and verified when loaded.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from denoise_core.errors import InputError, NotWritable, UserError, describe
from denoise_core.files import NPZ_ERRORS, read_npz, write_atomic
from denoise_core.noise import NoiseSpec, corrupt, make_generator

log = logging.getLogger(__name__)

SYNTHETIC_CONDITIONS = (
    "sp:0.05", "sp:0.1", "sp:0.2", "sp:0.3", "sp:0.4", "sp:0.5", "sp:0.6", "sp:0.7", "sp:0.8", "sp:0.9",
    "gauss:10", "gauss:15", "gauss:25", "gauss:35", "gauss:50",
    "sp:0.1+gauss:10", "sp:0.2+gauss:20", "sp:0.3+gauss:30",
)
# What real images carry: noise saved as JPEG (impulses no longer exactly 0 and 255) and random-valued impulses.
# Each condition has its own seed, so adding these left every synthetic slab byte-identical.
REALISTIC_CONDITIONS = (
    "sp:0.05+jpeg:95", "sp:0.1+jpeg:90", "sp:0.1+jpeg:75", "gauss:10+jpeg:95", "gauss:25+jpeg:75",
    "rv:0.05", "rv:0.1", "rv:0.2", "rv:0.3",
)
DEFAULT_CONDITIONS = SYNTHETIC_CONDITIONS + REALISTIC_CONDITIONS
DEFAULT_SEED = 2013


class HoldoutError(UserError, ValueError):
    """A stored hold-out is missing, damaged or does not match its checksum; the message says how to get a good one."""


class _Unusable(Exception):
    """Why a stored hold-out cannot be used, in words: ``load_holdout`` refuses it, ``holdout_for`` regenerates it."""


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
        raise InputError(f"hold-out conditions must be a list, e.g. [sp:0.1, gauss:25, sp:0.1+gauss:10], got {conditions!r}")
    canonical: list[str] = []
    for condition in conditions:
        try:
            spec = NoiseSpec.parse(condition)
        except (ValueError, AttributeError, TypeError) as error:
            raise InputError(f"hold-out condition {condition!r} is not a noise condition ({error}); "
                             "valid ones look like sp:0.1, gauss:25, sp:0.1+gauss:10 or none") from None
        if spec.is_blind:
            raise InputError(f"hold-out condition {condition!r} is a range; hold-out conditions are fixed levels, e.g. sp:0.1, gauss:25 or none")
        if str(spec) in canonical:
            raise InputError(f"hold-out condition {condition!r} is listed twice (as {spec})")
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
    """The arrays as ``path`` and their description and checksum beside it as ``.json``, each written whole or not at all."""
    path = Path(path)
    buffer = io.BytesIO()
    np.savez(buffer, clean=holdout.clean, noisy=holdout.noisy)
    data = buffer.getvalue()
    write_atomic(path, data)
    meta = {"conditions": list(holdout.conditions), "seed": holdout.seed, "sha256": holdout.checksum, "faces": len(holdout.clean),
            "file_sha256": hashlib.sha256(data).hexdigest()}
    write_atomic(path.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode())


def load_holdout(path: str | os.PathLike) -> Holdout:
    """A stored hold-out, verified against its checksum; a missing, damaged or altered one is a one-line HoldoutError."""
    path = Path(path)
    if not path.exists():
        raise HoldoutError(f"hold-out {path} does not exist: run the command that needs it again, it generates the hold-out on first use")
    try:
        return _read_holdout(path)
    except _Unusable as problem:
        raise HoldoutError(f"hold-out {path} {problem}: delete it and its .json, and the next command that needs it generates it again") from None


def _read_holdout(path: Path) -> Holdout:
    meta_path = path.with_suffix(".json")
    if not meta_path.exists():
        raise _Unusable(f"has no {meta_path.name} beside it (its conditions, seed and checksum)")
    try:
        meta = json.loads(meta_path.read_text())
        conditions, seed, expected = tuple(str(c) for c in meta["conditions"]), int(meta["seed"]), str(meta["sha256"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise _Unusable(f"has a damaged {meta_path.name} ({describe(error)})") from None
    raw = path.read_bytes()
    if "file_sha256" in meta:  # checked before the bytes are parsed, so an altered file is reported as such
        digest = hashlib.sha256(raw).hexdigest()
        if digest != meta["file_sha256"]:
            raise _Unusable(f"fails its checksum (file {digest[:12]} != {str(meta['file_sha256'])[:12]})")
    try:
        arrays = read_npz(raw, ("clean", "noisy"))
    except NPZ_ERRORS as error:
        raise _Unusable(f"is damaged ({describe(error)})") from None
    clean, noisy = arrays["clean"], arrays["noisy"]
    checksum = _checksum(clean, noisy, conditions, seed)
    if checksum != expected:
        raise _Unusable(f"fails its checksum ({checksum[:12]} != {expected[:12]})")
    return Holdout(clean=clean, noisy=noisy, conditions=conditions, seed=seed, checksum=checksum)


def holdout_for(clean: np.ndarray, cache_dir: str | os.PathLike, conditions: tuple[str, ...] = DEFAULT_CONDITIONS, seed: int = DEFAULT_SEED) -> Holdout:
    """Load the hold-out for these faces, conditions and seed from ``cache_dir``, generating it once.

    It is a cache: a damaged, altered or half-written file is generated again, with a warning, rather than refused.
    """
    conditions = tuple(str(NoiseSpec.parse(c)) for c in conditions)
    key = hashlib.sha256(clean.tobytes() + json.dumps([list(conditions), seed]).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"holdout-{key}.npz"
    if path.exists():
        try:
            return _read_holdout(path)
        except _Unusable as problem:
            log.warning("hold-out %s %s; generating it again", path, problem)
    holdout = make_holdout(clean, conditions, seed)
    try:
        save_holdout(holdout, path)
    except NotWritable as error:
        log.warning("%s; going on without the hold-out cache (set $FACESTUDY_CACHE to a writable folder to keep it)", error)
    return holdout


def _checksum(clean: np.ndarray, noisy: np.ndarray, conditions: tuple[str, ...], seed: int) -> str:
    digest = hashlib.sha256(json.dumps([list(conditions), seed, list(noisy.shape)]).encode())
    digest.update(np.ascontiguousarray(clean).tobytes())
    digest.update(np.ascontiguousarray(noisy).tobytes())
    return digest.hexdigest()
