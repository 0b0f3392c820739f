"""What a study trial pays besides training, at the ``local`` or ``workstation`` preset's size: each cost in seconds and
as % of a trial.

One trial of the preset's base settings runs here, with each piece of the study's machinery timed by calling the code
the study calls (the search space is left out: one configuration, its base):
- Ray start (once per study, without the dashboard, as a study of trials trained in process starts it) and a fresh
  Ray actor (Tune starts one per concurrent trial, and every other trial runs in the process of one that ended: it
  pays a call on a started actor), apart from what that process imports: Ray Tune and the trial code (torch with it),
  and ``torch._dynamo``, which ``torch.optim`` imports when the first optimizer is made. These with the actor's and
  Ray's start are the part of the fixed cost that belongs to Ray and torch themselves, the table's "of which" line;
- the data load: ``load_splits`` as each trial calls it (the parse cache warm, as after the study's first trial);
- fit's setup (model, faces to the device, the fixed noisy validation set) and each epoch's validation and
  bookkeeping: fit's wall time minus its training steps, from its epoch reports. The timed trial runs after two
  1-epoch fits on a few faces: the first pays what a fresh process pays at its first fit (torch's lazy imports),
  and that extra (the first's setup less the second's) is added to one trial per concurrent trial;
- checkpoints: ``save_checkpoint`` every epoch as ``train_in_process`` does, and one copy into the storage (what Tune
  persists);
- TensorBoard: the epoch's metrics and image grid (``epoch_metrics``) and ``write_epoch``;
- Optuna recording: ``RecordingSearch`` on a SQLite study, as the study runs it: ask, every epoch's result, tell;
- the end-of-study hold-out scoring of the best model, divided by the study's trials (it runs once per study, on the
  PrivateTest faces the study's checks loaded).

A trial here runs the preset's epochs, or ``--epochs N``: in a study ASHA stops most trials early, so a trial of the
study's mean length tells what its trials pay on average (the per-trial costs are spread over fewer epochs).

    python bench/fixed_cost.py [--preset local|workstation] [--epochs N] [--data PATH] [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from bench.ray_nodes import QUIET_RAY  # noqa: E402
from denoise_core.checkpoint import save_checkpoint  # noqa: E402
from denoise_core.data import default_cache_dir, load_splits, resolve_data_path  # noqa: E402
from denoise_core.evaluate import evaluate_on_holdout, model_denoiser  # noqa: E402
from denoise_core.fit import EpochReport, fit  # noqa: E402
from denoise_core.holdout import holdout_for  # noqa: E402
from denoise_core.model import ConvAutoencoder, model_config_from_dict  # noqa: E402
from denoise_core.study_files import CHECKPOINT_FILE  # noqa: E402
from denoise_core.tblog import write_epoch  # noqa: E402
from study.config import StudyConfig, build_config  # noqa: E402
from study.optuna_db import storage_url  # noqa: E402
from study.study import plan_resources  # noqa: E402
from study.searcher import RecordingSearch  # noqa: E402
from study.trial import epoch_metrics  # noqa: E402

QUICK = [("train.epochs", 2), ("train.train_size", 256), ("train.val_size", 64), ("holdout_faces", 16)]
RAY_START, ACTOR, IMPORTS, DYNAMO = ("Ray start (per study, a trial's share)", "Ray actor start",
                                    "imports in a trial process (Ray Tune, torch, the trial code)",
                                    "torch._dynamo, imported by torch.optim's first optimizer")
DATA, SETUP, VALIDATION, CHECKPOINTS, TENSORBOARD, OPTUNA, HOLDOUT = (
    "data load", "fit setup (model, data, validation set)", "validation and epoch bookkeeping", "checkpoints", "TensorBoard",
    "Optuna recording", "hold-out scoring (per study, a trial's share)")
ORDER = (RAY_START, ACTOR, IMPORTS, DYNAMO, DATA, SETUP, VALIDATION, CHECKPOINTS, TENSORBOARD, OPTUNA, HOLDOUT)
RAY_AND_TORCH = (RAY_START, ACTOR, IMPORTS, DYNAMO)  # what no change to this project's code takes away


def timed(costs: dict[str, float], name: str, work: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    value = work()
    costs[name] += time.perf_counter() - start
    return value


def study_config(storage: Path, preset: str, epochs: int | None, quick: bool) -> StudyConfig:
    """The preset at one thread per trial (its two concurrent trials share the 2 cores), or its quick size."""
    length = [("train.epochs", epochs), ("train.patience", epochs)] if epochs else []
    return build_config(preset, assignments=[("name", "fixed-cost"), ("storage", str(storage)), ("train.num_threads", 1),
                                             ("search", {}), *(QUICK if quick else []), *length])


def per_trial(first: float, later: float, processes: int, trials: int) -> float:
    """A cost's mean over the study's trials: ``first`` in each of its ``processes``, ``later`` in every trial that runs
    in a process an ended trial left."""
    return (processes * first + (trials - processes) * later) / trials


def ray_costs(costs: dict[str, float], trials: int, processes: int) -> None:
    """Ray's start (a share of it) and a trial's actor: a fresh one, timed up to its first call, then that process's
    imports (timed inside it), and a later call, what a trial in a reused process waits for instead."""
    import ray

    os.environ.update(QUIET_RAY)
    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    costs[RAY_START] += (time.perf_counter() - start) / trials

    @ray.remote(num_cpus=1)
    class Probe:
        def ready(self) -> bool:
            return True

        def imports(self) -> tuple[float, float]:
            start = time.perf_counter()
            import ray.tune  # noqa: F401
            import study.trial  # noqa: F401
            middle = time.perf_counter()
            import torch._dynamo  # noqa: F401
            return middle - start, time.perf_counter() - middle

    fresh: dict[str, float] = defaultdict(float)
    probe = timed(fresh, "start", lambda: Probe.remote())
    timed(fresh, "start", lambda: ray.get(probe.ready.remote()))
    trial_code, dynamo = ray.get(probe.imports.remote())
    timed(fresh, "again", lambda: ray.get(probe.ready.remote()))
    costs[ACTOR] += per_trial(fresh["start"], fresh["again"], processes, trials)
    costs[IMPORTS] += per_trial(trial_code, 0.0, processes, trials)
    costs[DYNAMO] += per_trial(dynamo, 0.0, processes, trials)
    ray.kill(probe)
    ray.shutdown()


def first_fit_extra(config: StudyConfig, data: str) -> float:
    """What the first fit in a process pays beyond a later one's setup, besides ``torch._dynamo`` (imported here first,
    as the actor's row counts it): two 1-epoch fits on a few faces, each's wall time less its epoch."""
    import torch._dynamo  # noqa: F401

    small = replace(config.train, epochs=1, patience=1, train_size=256, val_size=64)
    splits, setups = load_splits(data), []
    for _ in range(2):
        start = time.perf_counter()
        result = fit(small, splits)
        setups.append(time.perf_counter() - start - sum(epoch["seconds"] for epoch in result.history))
    return max(0.0, setups[0] - setups[1])


def one_trial(config: StudyConfig, data: str, storage: Path, costs: dict[str, float]) -> Any:
    """The trial, with every piece of the study's machinery around ``fit`` timed; returns fit's result."""
    splits = timed(costs, DATA, lambda: load_splits(data))
    search = RecordingSearch(config, storage_url(config))
    timed(costs, OPTUNA, lambda: search.suggest("trial"))
    writer = SummaryWriter(str(storage / "tensorboard"))
    reports: list[EpochReport] = []
    results: list[dict[str, Any]] = []
    callbacks: dict[str, float] = defaultdict(float)

    def on_epoch(report: EpochReport) -> None:
        reports.append(report)
        results.append(timed(callbacks, TENSORBOARD, lambda: epoch_metrics(report, config.grid_every)))
        with tempfile.TemporaryDirectory() as directory:
            timed(callbacks, CHECKPOINTS, lambda: save_checkpoint(report.checkpoint, Path(directory) / CHECKPOINT_FILE))
            timed(callbacks, CHECKPOINTS, lambda: shutil.copytree(directory, storage / "checkpoint", dirs_exist_ok=True))
        timed(callbacks, TENSORBOARD, lambda: write_epoch(writer, report, config.grid_every))
        timed(callbacks, OPTUNA, lambda: search.on_trial_result("trial", results[-1]))

    start = time.perf_counter()
    result = fit(config.train, splits, on_epoch=on_epoch)
    wall = time.perf_counter() - start
    timed(costs, OPTUNA, lambda: search.on_trial_complete("trial", results[-1]))
    writer.close()
    faces = min(config.train.train_size or len(splits.train), len(splits.train))
    training = sum(_train_seconds(report, faces, config.train.batch_size) for report in reports)
    epochs = sum(report.seconds for report in reports)
    for name, seconds in callbacks.items():
        costs[name] += seconds
    costs["training"] += training
    costs[VALIDATION] += epochs - training
    costs[SETUP] += wall - epochs - sum(callbacks.values())
    return result


def _train_seconds(report: EpochReport, faces: int, batch_size: int) -> float:
    """An epoch's training steps: its images over its images/s (fit counts the whole batches it ran)."""
    return max(1, faces // batch_size) * min(batch_size, faces) / report.images_per_second


def holdout_share(config: StudyConfig, data: str, result: Any, costs: dict[str, float]) -> None:
    """The closing hold-out scoring of the best model, as ``export_best`` does it, divided by the study's trials: from
    the PrivateTest faces that the study's ``preflight`` loaded, so their load is not counted here."""
    test_faces = load_splits(data).test_unique

    def score() -> None:
        model = ConvAutoencoder(model_config_from_dict(result.checkpoint["config"]["model"]))
        model.load_state_dict(result.checkpoint["best_model_state"])
        holdout = holdout_for(test_faces, default_cache_dir(), config.holdout_conditions)
        evaluate_on_holdout(model_denoiser(model.eval(), "cpu"), holdout, faces=config.holdout_faces)

    start = time.perf_counter()
    score()
    costs[HOLDOUT] += (time.perf_counter() - start) / config.num_samples


def table(costs: dict[str, float]) -> str:
    trial = sum(costs.values())
    rows = ["| cost | seconds | % of a trial |", "|---|--:|--:|", f"| training steps | {costs['training']:.1f} | {100 * costs['training'] / trial:.1f} |"]
    rows += [f"| {name} | {costs[name]:.2f} | {100 * costs[name] / trial:.1f} |" for name in ORDER]
    fixed = trial - costs["training"]
    rows.append(f"| **all but training** | {fixed:.1f} | {100 * fixed / trial:.1f} |")
    theirs = sum(costs[name] for name in RAY_AND_TORCH)
    rows.append(f"| of which Ray's and torch's own (the first {len(RAY_AND_TORCH)} rows) | {theirs:.1f} | {100 * theirs / trial:.1f} |")
    rows.append(f"| a trial | {trial:.1f} | 100 |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="FER2013 file (default: $FER2013_PATH)")
    parser.add_argument("--preset", choices=("local", "workstation"), default="local", help="the preset whose trial is timed (default: local)")
    parser.add_argument("--epochs", type=int, help="the trial's epochs (default: the preset's); a study's mean trial length tells its average cost")
    parser.add_argument("--quick", action="store_true", help="2 epochs on 256 faces: checks the benchmark runs, measures nothing")
    args = parser.parse_args(argv)
    data = str(resolve_data_path(args.data).resolve())
    load_splits(data)  # the parse cache filled, as the study's first trial leaves it
    costs: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as storage:
        config = study_config(Path(storage), args.preset, args.epochs, args.quick)
        resources = plan_resources(config, {"CPU": float(os.cpu_count() or 1)})
        processes = resources.concurrent  # Tune reuses the processes of ended trials (reuse_actors)
        ray_costs(costs, config.num_samples, processes)
        extra = first_fit_extra(config, data)
        result = one_trial(config, data, Path(storage), costs)
        costs[SETUP] += per_trial(extra, 0.0, processes, config.num_samples)
        holdout_share(config, data, result, costs)
    faces = config.train.train_size or "all training"
    print(f"\nthe {args.preset} preset{' at its quick size' if args.quick else ''}: {config.train.epochs} epoch(s) of {faces} faces, "
          f"{config.train.val_size} validation faces, precision {result.checkpoint['config']['precision']}, 1 thread; "
          f"hold-out {config.holdout_faces or 'all'} faces x {len(config.holdout_conditions)} conditions over {config.num_samples} trials; "
          f"trial processes reused, {processes} for {config.num_samples} trials; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(table(costs))
    return dict(costs)


if __name__ == "__main__":
    main()
