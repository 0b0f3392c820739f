"""What every analysis shares: the ``Finding`` it returns, the conditions it looks at, each denoiser's output
for them, and saving its figure."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from denoise_core.errors import InputError
from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from denoise_core.noise import NoiseSpec
from results.analysis.evidence import Evidence, verdict_word


PREFERRED_CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9", "gauss:25", "sp:0.2+gauss:20")


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    sentence: str  # one sentence stating the finding with its numbers
    expectation: str | None  # the project's expected finding this checks, or None
    supported: bool | None  # the verdict of its headline evidence (``evidence.overall``; None: cannot tell, or not testable)
    table: pd.DataFrame  # the numbers behind it
    figure: str | None = None  # file name of a PNG in out_dir, or None
    evidence: tuple[Evidence, ...] = ()  # each number with its interval and verdict; the headline ones decide ``supported``

    @property
    def verdict(self) -> str:
        return verdict_word(self.supported, any(e.headline for e in self.evidence))


@dataclass(frozen=True)
class Run:
    """One denoiser's output for one condition, with the inputs it came from."""

    name: str
    condition: str
    density: float
    clean: np.ndarray
    noisy: np.ndarray
    restored: np.ndarray


def subset(holdout: Holdout, faces: int | None) -> Holdout:
    """The first ``faces`` faces of every slab, so a quick analysis sees the same faces at every condition."""
    if faces is None or faces >= len(holdout.clean):
        return holdout
    return dataclasses.replace(holdout, clean=holdout.clean[:faces], noisy=holdout.noisy[:, :faces], checksum=f"{holdout.checksum}[:{faces}]")


def memoised(denoiser: Denoiser) -> Denoiser:
    """The denoiser with its outputs remembered by input bytes, so analyses that share a noisy slab run it once
    (each call gets its own copy)."""
    cache: dict[tuple, np.ndarray] = {}

    def run(noisy: np.ndarray) -> np.ndarray:
        noisy = np.ascontiguousarray(noisy)
        key = (noisy.shape, str(noisy.dtype), hashlib.blake2b(noisy.tobytes(), digest_size=16).hexdigest())
        if key not in cache:
            out = np.array(denoiser(noisy), dtype=np.float32)
            out.setflags(write=False)
            cache[key] = out
        return cache[key].copy()

    return run


def impulse_density(condition: str) -> float:
    """The density of a pure, fixed-density salt-and-pepper condition; NaN for anything else."""
    spec = NoiseSpec.parse(condition)
    if spec.kind == "sp" and not spec.is_blind:
        return float(spec.density[0])
    return math.nan


def default_conditions(holdout: Holdout) -> tuple[str, ...]:
    """A spread of impulse, Gaussian and mixed conditions present in the hold-out (all of them if none is)."""
    present = [c for c in PREFERRED_CONDITIONS if c in holdout.conditions]
    return tuple(present) or holdout.conditions


def impulse_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
    """The pure salt-and-pepper conditions, by increasing density."""
    return tuple(sorted((c for c in conditions if not math.isnan(impulse_density(c))), key=impulse_density))


def headline_condition(conditions: Sequence[str]) -> str:
    """The condition a sentence quotes: the impulse density closest to 0.5, else the first condition."""
    impulses = impulse_conditions(conditions)
    return min(impulses, key=lambda c: abs(impulse_density(c) - 0.5)) if impulses else conditions[0]


def canonical(conditions: Sequence[str]) -> tuple[str, ...]:
    """Each condition as the hold-out spells it, so a table's rows match the hold-out's slabs."""
    return tuple(str(NoiseSpec.parse(c)) for c in conditions)


def floats(images: np.ndarray) -> np.ndarray:
    """uint8 faces on the [0, 1] scale every error here is measured on."""
    return images.astype(np.float32) / np.float32(255.0)


def restore(denoiser: Denoiser, noisy: np.ndarray) -> np.ndarray:
    """The denoiser's output as float32, refused when its shape is not the input's."""
    restored = np.asarray(denoiser(noisy), dtype=np.float32)
    if restored.shape != noisy.shape:
        raise ValueError(f"a denoiser returned shape {restored.shape} for input {noisy.shape}")
    return restored


def runs(denoisers: Mapping[str, Denoiser], holdout: Holdout, conditions: Sequence[str]) -> list[Run]:
    """Every denoiser's output at every condition, conditions outermost; a condition the hold-out lacks is an input error."""
    if not denoisers:
        raise InputError("no denoisers to analyse")
    missing = [c for c in conditions if str(NoiseSpec.parse(c)) not in holdout.conditions]
    if missing:
        raise InputError(f"conditions {', '.join(missing)} are not in the hold-out, which has {', '.join(holdout.conditions)}")
    clean = floats(holdout.clean)
    outputs = []
    for condition in conditions:
        noisy = floats(holdout.noisy_for(condition))
        for name, denoiser in denoisers.items():
            outputs.append(Run(name, condition, impulse_density(condition), clean, noisy, restore(denoiser, noisy)))
    return outputs


def with_replicates(run: Run, replicates: Sequence[Denoiser]) -> np.ndarray:
    """The run's output and each replicate's (the first denoiser trained again from other seeds) on the same input: (seeds, N, 48, 48)."""
    return np.stack([run.restored, *(restore(replicate, run.noisy) for replicate in replicates)])


def primary_name(denoisers: Mapping[str, Denoiser]) -> str:
    """The denoiser each sentence speaks of: the first one given."""
    return next(iter(denoisers))


def slug(text: str) -> str:
    """Text as a file-name part: runs of anything but letters and digits become one underscore."""
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")


def save_figure(fig: Figure, out_dir: Path, name: str) -> str:
    """Lay the figure out and write it as a PNG in ``out_dir``; returns the file name a ``Finding`` carries."""
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(Path(out_dir) / name, dpi=100)
    return name

