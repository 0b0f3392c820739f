"""The classical baselines on the curves: each filter's parameter tuned on validation faces, then scored on
the test hold-out, condition by condition.

Tuning is per condition (the validation faces corrupted the same way, with another seed), so every filter is
shown at its best setting for that noise level: a generous comparison for the classical side. Non-local means
and BM3D cost milliseconds to a second per 48x48 face, so they run on the first ``slow_faces`` hold-out faces
(and tune on at most ``SLOW_TUNE_FACES`` validation faces); BM3D also only at ``bm3d_conditions``. Scores are
cached on disk (``ScoreCache``), so only the first report on a machine pays for them.

The report's reference filter (``best_baseline``, and per condition ``reference_baselines``) is chosen on
validation faces and noise, never on the test faces whose scores it then shows: every filter is validated on the
same first ``tune_faces`` validation faces of each condition, so the choice rests on that many faces.

The work is one job per filter and condition (``Job``), run by ``plan.workers`` processes of one torch thread
each, or here when it is 1; a job's numbers do not depend on where it ran. ``started`` hands the validation out
before the test scores, so that a report can go on with what needs the reference filter while the rest runs.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from time import process_time
from typing import Iterator

import numpy as np
import pandas as pd
import torch

from denoise_core.baselines import BASELINES, TUNABLE, tune_parameter
from denoise_core.data import to_float
from denoise_core.holdout import DEFAULT_SEED, Holdout, make_holdout
from denoise_core.metrics import psnr
from results.curves import CLEAN, COLUMNS, SCORES, Denoiser, canonical, curve_row, noise_axis, score_slab, slab_input_scores
from results.options import BM3D_CONDITIONS
from results.score_cache import ScoreCache

log = logging.getLogger(__name__)

SLOW = ("nlm", "bm3d")
SLOW_TUNE_FACES = 8
VAL_SEED = DEFAULT_SEED + 1  # validation noise for tuning: not the test hold-out's noise
GRIDS: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (0.5, 0.8, 1.2, 1.8, 2.7),  # sigma, pixels
    "tv": (0.03, 0.06, 0.12, 0.25, 0.5),  # Chambolle weight
    "nlm": (0.04, 0.08, 0.15, 0.3),  # h, 0..1 scale
    "bm3d": (0.04, 0.1, 0.2, 0.4),  # noise sigma, 0..1 scale
}
COSTLY_FIRST = ("bm3d", "biharmonic_inpaint", "adaptive_median", "awmf", "median5", "tv")  # queued first, so the last jobs are short


@dataclass(frozen=True)
class BaselinePlan:
    """How much of the hold-out each baseline sees, and how many processes do the work."""

    faces: int | None = None  # hold-out faces for the fast filters (None: all)
    slow_faces: int = 200  # hold-out faces for NLM and BM3D
    tune_faces: int = 64  # validation faces: every filter is validated on them; they tune the fast filters
    bm3d_conditions: tuple[str, ...] = BM3D_CONDITIONS
    names: tuple[str, ...] = tuple(BASELINES)
    workers: int = 1  # processes for the jobs (1: this one)


def baseline_faces(name: str, plan: BaselinePlan) -> int | None:
    if name not in SLOW:
        return plan.faces
    return plan.slow_faces if plan.faces is None else min(plan.slow_faces, plan.faces)


def baseline_conditions(name: str, conditions: tuple[str, ...], plan: BaselinePlan) -> tuple[str, ...]:
    if name != "bm3d":
        return conditions
    wanted = {canonical(c) for c in plan.bm3d_conditions}
    return tuple(c for c in conditions if c in wanted)


def tuning_faces(name: str, plan: BaselinePlan) -> int:
    faces = baseline_faces(name, plan)
    limit = min(plan.tune_faces, SLOW_TUNE_FACES) if name in SLOW else plan.tune_faces
    return max(1, min(limit, faces) if faces else limit)


def baseline_denoiser(name: str, value: float | None = None) -> Denoiser:
    return partial(BASELINES[name], **{TUNABLE[name]: value}) if value is not None else BASELINES[name]


@dataclass(frozen=True)
class Faces:
    """What the jobs read, as uint8: the first test faces, clean and at each condition, and the validation faces with
    their own noise (``VAL_SEED``), made once for every filter."""

    clean: np.ndarray
    noisy: dict[str, np.ndarray]
    val_clean: np.ndarray
    val_noisy: dict[str, np.ndarray]


def job_faces(holdout: Holdout, val: np.ndarray, conditions: tuple[str, ...], plan: BaselinePlan) -> Faces:
    counts = [baseline_faces(name, plan) for name in plan.names]
    test = None if None in counts else max(counts, default=0)
    val_clean = val[:plan.tune_faces]
    noisy = tuple(c for c in conditions if c != CLEAN)
    validation = make_holdout(val_clean, noisy, VAL_SEED)  # 'none' must not reach make_holdout (see report.curve_holdout)
    val_noisy = {**({CLEAN: val_clean} if CLEAN in conditions else {}), **{c: validation.noisy_for(c) for c in noisy}}
    return Faces(holdout.clean[:test], {c: holdout.noisy_for(c)[:test] for c in conditions}, val_clean, val_noisy)


@dataclass(frozen=True, eq=False)
class Job:
    """One filter at one condition, with the uint8 faces it reads: tune it (if it has a parameter) and validate it on
    the validation faces, and/or score it on the test faces."""

    name: str
    condition: str
    clean: np.ndarray  # the test faces it is scored on
    noisy: np.ndarray
    val_clean: np.ndarray  # the validation faces, with this condition's validation noise
    val_noisy: np.ndarray
    tune_faces: int  # the first this many validation faces tune the parameter
    validate: bool
    score: bool
    value: float | None = None  # the tuned setting, when the validation is known already
    noisy_scores: dict[str, float] | None = None  # the noisy input's scores on these test faces


@dataclass(frozen=True)
class Done:
    validation: dict | None  # value, tune_psnr (mean over the tuning faces), face_psnr (every validation face)
    scores: dict | None
    seconds: float  # the job's CPU time (its process's: a worker runs one job at a time, on one thread)


def run_job(job: Job) -> Done:
    started = process_time()
    validation = validate(job.name, job.val_clean, job.val_noisy, job.tune_faces) if job.validate else None
    scores = None
    if job.score:
        value = validation["value"] if validation else job.value
        scores = score_slab(baseline_denoiser(job.name, value), job.clean, job.noisy, job.noisy_scores)
    return Done(validation, scores, process_time() - started)


def validate(name: str, clean: np.ndarray, noisy: np.ndarray, tune_faces: int) -> dict:
    """The tuned setting (the grid value with the best mean PSNR on the first ``tune_faces`` faces) and the filter's
    per-face PSNR at it on every face given: the tuning run's own scores, and the other faces run once."""
    value, tune_psnr, tuned = None, None, torch.empty(0, dtype=torch.float64)
    if name in TUNABLE:
        value, table, tuned = tune_parameter(name, to_float(noisy[:tune_faces]), to_float(clean[:tune_faces]), list(GRIDS[name]))
        tune_psnr = dict(table)[value]
    rest = len(tuned)
    if rest < len(clean):
        restored = baseline_denoiser(name, value)(to_float(noisy[rest:]))
        tuned = torch.cat([tuned, psnr(torch.from_numpy(restored), torch.from_numpy(to_float(clean[rest:])))])
    return {"value": value, "tune_psnr": tune_psnr, "face_psnr": tuned.tolist()}


def digest(*arrays: np.ndarray) -> str:
    hashed = hashlib.sha256()
    for array in arrays:
        hashed.update(array.tobytes())
    return hashed.hexdigest()


def validation_key(name: str, condition: str, faces: Faces, tune_faces: int) -> dict:
    return {"kind": "validate", "name": name, "condition": condition, "grid": list(GRIDS.get(name, ())), "tune_faces": tune_faces,
            "seed": VAL_SEED, "val": digest(faces.val_clean, faces.val_noisy[condition])}


def score_key(name: str, value: float | None, condition: str, faces: Faces, count: int) -> dict:
    return {"kind": "score", "name": name, "value": value, "condition": condition, "faces": count,
            "slab": digest(faces.clean[:count], faces.noisy[condition][:count])}


def one_thread() -> None:
    """A worker's start: one process per core, so more torch threads per process would only contend."""
    torch.set_num_threads(1)


@contextmanager
def filter_processes(workers: int) -> Iterator[Executor]:
    """``workers`` spawned processes (a fresh interpreter each, never a fork of this one's threads), started at once so
    that their imports overlap the caller's own work, and shut down on the way out (queued jobs cancelled); 1: jobs
    run here, each as it is queued. A script that builds reports must guard its entry point (``if __name__ ==
    "__main__":``), as every spawning program must."""
    if workers <= 1:
        yield InProcess()
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=one_thread)
    try:
        for _ in range(workers):
            pool.submit(one_thread)
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class InProcess(Executor):
    """Runs each job as it is submitted, here: the one-process path."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # noqa: BLE001 - handed to whoever asks for the result, as a pool would
            future.set_exception(error)
        return future


@dataclass
class BaselineRun:
    """The plan's jobs, queued at once: ``validation`` waits for the tuning and validation only, ``curves`` for everything."""

    conditions: tuple[str, ...]
    plan: BaselinePlan
    cache: ScoreCache
    faces: Faces
    executor: Executor
    validations: dict[tuple[str, str], dict] = field(default_factory=dict)
    scores: dict[tuple[str, str], dict] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)  # jobs not yet collected, per filter
    pending: list[tuple[Job, Future]] = field(default_factory=list)

    def queue(self) -> None:
        """Every job that the cache does not answer, the costly filters first: a tunable filter is scored in the job
        that tunes it; the others get a validation job, and a scoring job queued after every validation job."""
        later, inputs = [], {}
        for name in sorted(self.plan.names, key=lambda name: COSTLY_FIRST.index(name) if name in COSTLY_FIRST else len(COSTLY_FIRST)):
            count, tune = self.test_faces(name), self.tune_faces(name)
            for condition in baseline_conditions(name, self.conditions, self.plan):
                validation = self.cache.get(validation_key(name, condition, self.faces, tune))
                if validation is not None:
                    self.validations[name, condition] = validation
                value = validation["value"] if validation else None
                if validation is not None or name not in TUNABLE:
                    scores = self.cache.get(score_key(name, value, condition, self.faces, count))
                    if scores is not None and set(SCORES) <= set(scores):
                        self.scores[name, condition] = scores
                needs_score = (name, condition) not in self.scores
                if needs_score and (condition, count) not in inputs:
                    inputs[condition, count] = slab_input_scores(self.faces.clean[:count], self.faces.noisy[condition][:count])
                noisy = inputs.get((condition, count))
                job = partial(Job, name, condition, self.faces.clean[:count], self.faces.noisy[condition][:count], self.faces.val_clean,
                              self.faces.val_noisy[condition], tune)
                if validation is None:
                    together = name in TUNABLE and needs_score
                    self.submit(job(validate=True, score=together, noisy_scores=noisy if together else None))
                    if needs_score and not together:
                        later.append(job(validate=False, score=True, noisy_scores=noisy))
                elif needs_score:
                    later.append(job(validate=False, score=True, value=value, noisy_scores=noisy))
        for job in later:
            self.submit(job)

    def test_faces(self, name: str) -> int:
        return len(self.faces.clean[:baseline_faces(name, self.plan)])

    def tune_faces(self, name: str) -> int:
        return len(self.faces.val_clean[:tuning_faces(name, self.plan)])

    def submit(self, job: Job) -> None:
        self.left[job.name] = self.left.get(job.name, 0) + 1
        self.pending.append((job, self.executor.submit(run_job, job)))

    def collect(self, only_validation: bool) -> None:
        """Take in finished jobs (those that validate, or all), in queue order, into the tables and the cache."""
        kept = []
        for job, future in self.pending:
            if only_validation and not job.validate:
                kept.append((job, future))
            else:
                self.record(job, future.result())
        self.pending = kept

    def record(self, job: Job, done: Done) -> None:
        self.seconds[job.name] = self.seconds.get(job.name, 0.0) + done.seconds
        if done.validation is not None:
            self.validations[job.name, job.condition] = done.validation
            self.cache.put(validation_key(job.name, job.condition, self.faces, job.tune_faces), done.validation)
        if done.scores is not None:
            value = done.validation["value"] if done.validation else job.value
            self.scores[job.name, job.condition] = done.scores
            self.cache.put(score_key(job.name, value, job.condition, self.faces, len(job.clean)), done.scores)
        self.left[job.name] -= 1
        if self.left[job.name] == 0:
            self.log_baseline(job.name)

    def log_baseline(self, name: str) -> None:
        conditions = baseline_conditions(name, self.conditions, self.plan)
        log.info("baseline %s: %d conditions on %d test faces, validated on %d faces, in %.1f CPU s", name, len(conditions),
                 self.test_faces(name), len(self.faces.val_clean), self.seconds.get(name, 0.0))

    def validation(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The tuning table (baseline, condition, parameter, value, val_psnr, val_faces) and the per-face validation PSNR
        of every filter at its tuned setting (baseline, condition, faces, face_psnr)."""
        self.collect(only_validation=True)
        tuning, validation = [], []
        for name in self.plan.names:
            for condition in baseline_conditions(name, self.conditions, self.plan):
                found = self.validations[name, condition]
                if name in TUNABLE:
                    tuning.append({"baseline": name, "condition": condition, "parameter": TUNABLE[name], "value": found["value"],
                                   "val_psnr": found["tune_psnr"], "val_faces": self.tune_faces(name)})
                validation.append({"baseline": name, "condition": condition, "faces": len(found["face_psnr"]), "face_psnr": found["face_psnr"]})
        return pd.DataFrame(tuning), pd.DataFrame(validation, columns=["baseline", "condition", "faces", "face_psnr"])

    def curves(self) -> pd.DataFrame:
        """Curve rows for every baseline, in the plan's order."""
        self.collect(only_validation=False)
        rows = []
        for name in self.plan.names:
            if name not in self.left:
                log.info("baseline %s: from the cache", name)
            for condition in baseline_conditions(name, self.conditions, self.plan):
                value = self.validations[name, condition]["value"]
                rows.append(curve_row(name, "classical", condition, self.scores[name, condition], f"{TUNABLE[name]}={value:g}" if value is not None else ""))
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def work(self) -> pd.DataFrame:
        """Where each filter ran, on how many faces, and the CPU seconds its jobs took (0 where the cache had them)."""
        rows = []
        for name in self.plan.names:
            conditions = baseline_conditions(name, self.conditions, self.plan)
            rows.append({"baseline": name, "conditions": len(conditions), "where": "every condition" if conditions == self.conditions else ", ".join(conditions),
                         "test_faces": self.test_faces(name), "tuned_on": self.tune_faces(name) if name in TUNABLE else 0,
                         "validated_on": len(self.faces.val_clean), "cpu_s": round(self.seconds.get(name, 0.0), 1)})
        return pd.DataFrame(rows)


@contextmanager
def started(holdout: Holdout, val: np.ndarray, conditions: tuple[str, ...], plan: BaselinePlan, cache: ScoreCache,
            executor: Executor | None = None) -> Iterator[BaselineRun]:
    """The plan's jobs queued on ``executor`` (from ``filter_processes``), else on ``plan.workers`` processes of its own."""
    with nullcontext(executor) if executor is not None else filter_processes(plan.workers) as pool:
        run = BaselineRun(conditions, plan, cache, job_faces(holdout, val, conditions, plan), pool)
        run.queue()
        yield run


def baseline_curves(holdout: Holdout, val: np.ndarray, conditions: tuple[str, ...], plan: BaselinePlan, cache: ScoreCache) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curve rows for every baseline and the tuning table (baseline, condition, parameter, value, val_psnr, val_faces)."""
    with started(holdout, val, conditions, plan, cache) as run:
        tuning, _ = run.validation()
        return run.curves(), tuning


def validation_means(validation: pd.DataFrame) -> pd.DataFrame:
    """Mean validation PSNR per (baseline, condition), every baseline of a condition on the same faces: the first
    ``faces`` validation faces that all of them were scored on."""
    rows = []
    for condition, group in validation.groupby("condition", sort=False):
        faces = int(group["faces"].min())
        rows += [{"baseline": row.baseline, "condition": condition, "val_psnr": float(np.mean(row.face_psnr[:faces])), "val_faces": faces}
                 for row in group.itertuples()]
    return pd.DataFrame(rows, columns=["baseline", "condition", "val_psnr", "val_faces"])


def best_baseline(validation: pd.DataFrame) -> str:
    """The classical filter with the highest mean validation PSNR over the S&P conditions, among those validated on all
    of them: chosen on validation faces, so that its test scores are an honest reference."""
    means = validation_means(validation)
    impulse = means[means["condition"].map(lambda c: noise_axis(c).kind == "sp")]
    counts = impulse.groupby("baseline")["condition"].nunique()
    complete = counts[counts == counts.max()].index
    return str(impulse[impulse["baseline"].isin(complete)].groupby("baseline")["val_psnr"].mean().idxmax())


def reference_baselines(validation: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per condition, the filter with the best validation PSNR, beside its test scores from ``curves``."""
    means = validation_means(validation)
    chosen = means.loc[means.groupby("condition", sort=False)["val_psnr"].idxmax()]
    test = curves.loc[curves["family"] == "classical", ["model", "condition", "psnr", "ssim", "ssim_gauss", "faces"]]
    merged = chosen.merge(test.rename(columns={"model": "baseline", "faces": "test_faces"}), on=["baseline", "condition"], how="left")
    return merged.rename(columns={"psnr": "test_psnr", "ssim": "test_ssim", "ssim_gauss": "test_ssim_gauss"}).reset_index(drop=True)


def fixed_denoiser(name: str, tuning: pd.DataFrame, density: float = 0.5) -> tuple[Denoiser, str]:
    """The baseline as one denoiser for every input: a tuned filter keeps the value tuned at the S&P density
    nearest ``density`` (used where the condition is not known, e.g. by the error analysis)."""
    if name not in TUNABLE or tuning.empty:
        return baseline_denoiser(name), ""
    own = tuning[tuning["baseline"] == name]
    levels = own["condition"].map(lambda c: noise_axis(c).level if noise_axis(c).kind == "sp" else np.inf)
    if not np.isfinite(levels).any():
        return baseline_denoiser(name), ""
    chosen = own.loc[(levels - density).abs().idxmin()]
    return baseline_denoiser(name, float(chosen["value"])), f"{chosen['parameter']}={chosen['value']:g} (tuned at {chosen['condition']})"


def denoiser_at(name: str, tuning: pd.DataFrame, condition: str) -> Denoiser:
    """The baseline with the parameter tuned for ``condition`` (the S&P-0.5 setting where none was tuned)."""
    if name not in TUNABLE:
        return BASELINES[name]
    own = tuning[(tuning["baseline"] == name) & (tuning["condition"] == canonical(condition))] if len(tuning) else tuning
    if len(own) == 0:
        return fixed_denoiser(name, tuning)[0]
    return baseline_denoiser(name, float(own["value"].iloc[0]))
