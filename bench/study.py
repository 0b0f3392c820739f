"""Overhead of the study machinery, side by side in one run.

1. The same trials run by the bare core loop (``fit``, one after another) vs by the study (Ray Tune,
   in-process trials, one at a time, no early stopping), for short and for realistic epoch counts.
2. The same with ``train_workers: 1`` (each trial a Ray Train TorchTrainer).
3. Time from ``python study/run.py`` to the first trial's first reported epoch.
4. Trials per hour of the ``local`` preset on this machine (the whole ``python study/run.py --preset local``,
   without its closing report).

    python bench/study.py [--data PATH] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from denoise_core.data import load_splits, resolve_data_path  # noqa: E402
from denoise_core.fit import fit  # noqa: E402
from study.config import build_config  # noqa: E402

QUIET = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
         "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


def bare_seconds(config, splits, trials: int) -> float:
    training = config.train
    start = time.perf_counter()
    for _ in range(trials):
        fit(training, splits)
    return time.perf_counter() - start


def study_seconds(config) -> float:
    from study.study import run_study

    start = time.perf_counter()
    summary = run_study(config)
    assert set(summary.trials["status"]) == {"completed"}, summary.trials["status"].tolist()
    return time.perf_counter() - start


def first_epoch_seconds(data: str, storage: str) -> float:
    command = [sys.executable, "study/run.py", "--preset", "smoke", "--data", data, "--storage", storage, "--name", "first-epoch",
               "--num-samples", "1", "--set", "search={}"]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **QUIET, "RAY_ADDRESS": ""})
    try:
        while process.poll() is None:
            if any(p.read_text().strip() for p in Path(storage, "first-epoch").glob("trial_*/result.json")):
                return time.perf_counter() - start
            time.sleep(0.1)
    finally:
        process.wait()
    raise RuntimeError("the study ended without reporting an epoch")


def local_preset_rate(data: str, storage: str) -> tuple[int, float]:
    """Trials finished and wall seconds of the whole local-preset study, start-up and export included."""
    command = [sys.executable, "study/run.py", "--preset", "local", "--data", data, "--storage", storage, "--name", "local-rate",
               "--set", "report=false"]
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **QUIET, "RAY_ADDRESS": ""}, check=True)
    seconds = time.perf_counter() - start
    return len(pd.read_csv(Path(storage, "local-rate", "trials.csv"))), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data")
    parser.add_argument("--quick", action="store_true", help="only the short sizes")
    args = parser.parse_args()
    os.environ.update(QUIET)
    data = str(resolve_data_path(args.data).resolve())
    splits = load_splits(data)
    import ray

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    sizes = [("short", 2, 256)] + ([] if args.quick else [("realistic", 8, 4096)])
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for label, epochs, faces in sizes:
            for workers in (0, 1):
                trials = 3
                settings = {"name": f"{label}-{workers}", "storage": storage, "data": data, "num_samples": trials, "max_concurrent": 1,
                            "scheduler": "none", "search": {}, "train_workers": workers, "cpus_per_worker": float(os.cpu_count() or 1) - (0.05 if workers else 0),
                            "holdout_faces": 64, "train.epochs": epochs, "train.train_size": faces, "train.val_size": 256, "train.patience": 100,
                            "train.num_threads": os.cpu_count()}
                config = build_config("smoke", assignments=list(settings.items()))
                bare = bare_seconds(config, splits, trials)
                ours = study_seconds(config)
                rows.append((f"{label}: {trials} trials x {epochs} epochs x {faces} faces, train_workers={workers}", bare, ours))
        ray.shutdown()
        first = first_epoch_seconds(data, storage)
        local_trials, local_seconds = local_preset_rate(data, storage)
    print(f"\nmachine: {os.cpu_count()} CPUs; ray {ray.__version__}\n")
    print("| what | bare fit loop (s) | study (s) | overhead |")
    print("|---|---|---|---|")
    for what, bare, ours in rows:
        print(f"| {what} | {bare:.1f} | {ours:.1f} | {100 * (ours / bare - 1):+.0f}% |")
    print(f"| `python study/run.py --preset smoke` to the first reported epoch | | {first:.1f} | |")
    print(f"| `python study/run.py --preset local`: {local_trials} trials | | {local_seconds:.1f} | {3600 * local_trials / local_seconds:.0f} trials/h |")
    print("\nThe study column includes exporting the best model and scoring it on 64 hold-out faces; target: overhead < 15% at realistic sizes.")


if __name__ == "__main__":
    main()
