"""Benchmark of ``python -m results.report`` on a 50-trial study with 5 models on the curves, printed as one table.

    python bench/report.py [--data PATH] [--trials 50] [--top 5] [--faces 100] [--threads 1]
    python bench/report.py --study-budget [--data PATH]

The study is synthesised without Ray: a few small models (the smoke preset's size) are trained with ``fit`` on
the real data, then replicated into ``--trials`` trial directories with varied hyperparameters in trials.csv,
each trial with its own checkpoint file (a few trials errored, without one). The report is built twice: cold
(an empty baseline-score cache, so every classical filter is tuned and scored) and warm (the cache a second
report on the same machine finds). BM3D is limited to ``--bm3d-faces`` faces at ``--bm3d-conditions``, because
it costs about 0.25 s per 48x48 face and condition; the table says what each step cost.

``--study-budget`` instead runs the README's first command as a fresh clone does, with every cache empty (a new
``$FACESTUDY_CACHE``): ``python study/run.py --preset local --no-report`` (its wall time: the study's trials), then
the report it would have built at its end (``build_report`` with the study's own ``report_options``: the data
cache is warm from the study, the filters' score cache cold), and prints both, the report's share and whether
it is within ``BUDGET`` of the study. About 10 minutes of both cores; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.checkpoint import save_checkpoint  # noqa: E402
from denoise_core.data import ENV_VAR, load_splits  # noqa: E402
from denoise_core.model import ModelConfig  # noqa: E402
from denoise_core.fit import TrainConfig, fit  # noqa: E402
from bench.ray_nodes import QUIET_RAY  # noqa: E402
from bench.tables import markdown_table  # noqa: E402
from results.report import ReportOptions, build_report, saved_options  # noqa: E402

SHARED_FER2013 = REPO_ROOT.parent / "shared" / "fer2013" / "fer2013.csv.gz"
SOURCES = ((4, "mse"), (8, "mse"), (16, "mse"), (4, "mae"), (8, "mae"), (16, "mae"))  # bottleneck size, loss
CONDITIONS = ["sp:0.1", "sp:0.5", "gauss:25", "sp:0.1+gauss:10"]  # the smoke preset's hold-out conditions
SEARCH = {"model.bottleneck_size": {"choice": [4, 8, 16]}, "model.dropout": {"uniform": [0.0, 0.2]},
          "loss": {"choice": ["mse", "mae"]}, "lr": {"loguniform": [0.003, 0.01]}}
BUDGET = 1 / 3  # a first report may cost at most this share of the local study's trials (facestudy issue 30)


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def train_sources(data: Path) -> list[dict]:
    """Small models of the smoke preset's size, one per (bottleneck, loss): their checkpoints and best metrics."""
    splits = load_splits(data)
    sources = []
    for seed, (bottleneck, loss) in enumerate(SOURCES):
        config = TrainConfig(model=ModelConfig(base_width=8, bottleneck_size=bottleneck, skip=False, mask_input=False, gate=False), noise="sp:0.1-0.5", loss=loss, epochs=2,
                             batch_size=32, lr=0.006, train_size=512, val_size=64, seed=seed, device="cpu")
        result = fit(config, splits)
        sources.append({"checkpoint": result.checkpoint, "best": result.best, "best_epoch": result.best_epoch, "parameters": result.parameters,
                        "bottleneck": bottleneck, "loss": loss, "seconds": result.seconds})
    return sources


def synthesise_study(root: Path, data: Path, sources: list[dict], trials: int, seed: int = 0) -> Path:
    """A study directory of ``trials`` trials as study/study.py writes one, every trial with its own checkpoint file."""
    rng = random.Random(seed)
    study = root / f"bench{trials}"
    rows = []
    for index in range(trials):
        source = sources[index % len(sources)]
        trial_id = f"{index:08x}"
        status = "error: RuntimeError: worker died" if index % 20 == 19 else ("stopped by ASHA" if index % 7 == 3 else "completed")
        row = {"trial_id": trial_id, "status": status, "param_model.bottleneck_size": source["bottleneck"],
               "param_model.dropout": rng.uniform(0.0, 0.2), "param_loss": source["loss"], "param_lr": 10 ** rng.uniform(-2.52, -2.0),
               "path": str(study / f"trial_{trial_id}")}
        if not status.startswith("error"):
            checkpoint = study / f"trial_{trial_id}" / "checkpoint_000001"
            save_checkpoint(source["checkpoint"], checkpoint / "checkpoint.pt")
            best = source["best"]
            row.update(best_epoch=source["best_epoch"], epochs_run=2, best_val_loss=best["val_loss"] * rng.uniform(0.97, 1.03),
                       best_val_psnr=best["val_psnr"], best_val_ssim=best["val_ssim"], noisy_val_psnr=best["noisy_psnr"],
                       parameters=source["parameters"], time_s=source["seconds"], node_ip="127.0.0.1", checkpoint=str(checkpoint))
        rows.append(row)
    pd.DataFrame(rows).to_csv(study / "trials.csv", index=False)
    config = {"name": study.name, "data": str(data), "metric": "val_loss", "mode": "min", "holdout_faces": 64,
              "holdout_conditions": CONDITIONS, "search": SEARCH}
    (study / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return study


def run(study: Path, options: ReportOptions) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    report = build_report(study, None, options)
    return time.perf_counter() - started, pd.read_csv(report / "timings.csv")


def budget_rows(study_s: float, report_s: float, steps: pd.DataFrame, filters: pd.DataFrame) -> list[dict]:
    """The budget table: the study, the report, its share against ``BUDGET``, then the report's steps and each filter's CPU."""
    share = report_s / study_s
    rows = [{"what": "study: python study/run.py --preset local --no-report (cold caches)", "seconds": round(study_s, 1)},
            {"what": "its first report: build_report with the study's report_options (cold score cache)", "seconds": round(report_s, 1)},
            {"what": f"report / study: {share:.2f} against a budget of {BUDGET:.2f}: {'met' if share <= BUDGET else 'NOT met'}",
             "seconds": round(BUDGET * study_s, 1)}]
    rows += [{"what": f"report step: {row.step}", "seconds": round(float(row.seconds), 1)} for row in steps.itertuples()]
    rows += [{"what": f"filter {row.baseline} ({row.conditions} conditions, {row.test_faces} test faces), CPU", "seconds": float(row.cpu_s)}
             for row in filters.itertuples()]
    return rows


def study_budget(data: Path, keep: Path | None) -> list[dict]:
    """The local preset's study, then its first report, each with cold caches, in a folder of their own."""
    root = Path(tempfile.mkdtemp(prefix="bench-budget-")) if keep is None else keep
    saved = os.environ.get("FACESTUDY_CACHE")
    os.environ["FACESTUDY_CACHE"] = str(root / "cache")  # an empty cache: data, hold-outs and the filters' scores
    try:
        command = [sys.executable, str(REPO_ROOT / "study" / "run.py"), "--preset", "local", "--data", str(data), "--storage", str(root / "studies"),
                   "--no-report"]
        say(f"study: {' '.join(command)}")
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO_ROOT, env={**os.environ, **QUIET_RAY}, capture_output=True, text=True)
        study_s = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"bench/report.py: error: the study failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        study = root / "studies" / "local"
        say(f"study done in {study_s:.0f} s; its first report")
        started = time.perf_counter()
        report = build_report(study, str(data), saved_options(study))
        report_s = time.perf_counter() - started
        return budget_rows(study_s, report_s, pd.read_csv(report / "timings.csv"), pd.read_csv(report / "baselines.csv"))
    finally:
        if saved is None:
            os.environ.pop("FACESTUDY_CACHE", None)
        else:
            os.environ["FACESTUDY_CACHE"] = saved
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/report.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=f"FER2013 file (default: ${ENV_VAR}, else {SHARED_FER2013})")
    parser.add_argument("--study-budget", action="store_true", help="the local preset's study and its first report, cold, against the budget")
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--top", type=int, default=5, help="learned models on the curves and grids")
    parser.add_argument("--faces", type=int, default=100, help="test faces per model evaluation")
    parser.add_argument("--analysis-faces", type=int, default=64, help="test faces for the error analysis")
    parser.add_argument("--bm3d-faces", type=int, default=2)
    parser.add_argument("--bm3d-conditions", default="gauss:25")
    parser.add_argument("--threads", type=int, help="torch threads (default: 1; with --study-budget torch's own, as the study's)")
    parser.add_argument("--keep", type=Path, help="keep the study (or studies) and the report here")
    args = parser.parse_args(argv)
    data = Path(args.data or os.environ.get(ENV_VAR) or SHARED_FER2013)
    if not data.exists():
        raise SystemExit(f"bench/report.py: error: FER2013 not found at {data}; pass --data PATH or set {ENV_VAR}")
    if args.study_budget:
        if args.threads:
            torch.set_num_threads(args.threads)
        load = os.getloadavg()[0]
        rows = study_budget(data, args.keep)
        print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} thread(s); "
              f"load average {load:.1f} (1 min) at the start, {os.getloadavg()[0]:.1f} at the end\n")
        print("\n".join(markdown_table(rows)))
        return
    torch.set_num_threads(args.threads or 1)
    root = Path(tempfile.mkdtemp(prefix="bench-report-")) if args.keep is None else args.keep
    try:
        say(f"training {len(SOURCES)} small source models (not timed)")
        started = time.perf_counter()
        sources = train_sources(data)
        study = synthesise_study(root, data, sources, args.trials)
        say(f"study with {args.trials} trials at {study} ready in {time.perf_counter() - started:.0f} s")
        options = ReportOptions(top=args.top, faces=args.faces, analysis_faces=args.analysis_faces, bm3d_faces=args.bm3d_faces,
                                bm3d_conditions=tuple(args.bm3d_conditions.split(",")), cache_dir=str(root / "score-cache"), device="cpu")
        say("cold report (empty baseline-score cache)")
        cold_total, cold = run(study, options)
        say("warm report (baseline scores cached)")
        warm_total, warm = run(study, ReportOptions(**{**options.__dict__, "overwrite": True}))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    table = cold.merge(warm, on="step", how="outer", suffixes=(" cold (s)", " warm (s)"))
    threads = args.threads or 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} with {threads} thread(s); "
          f"load average {os.getloadavg()[0]:.1f} (1 min) at the end")
    print(f"study: {args.trials} trials ({sum(1 for i in range(args.trials) if i % 20 != 19)} with checkpoints), top {args.top} on the curves; "
          f"{args.faces} test faces per evaluation, {args.analysis_faces} for the error analysis; "
          f"NLM on {args.bm3d_faces} faces, BM3D on {args.bm3d_faces} faces at {args.bm3d_conditions}\n")
    width = max(len(s) for s in table["step"])
    print(f"{'step':<{width}}  {'cold (s)':>9}  {'warm (s)':>9}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 9}")
    for row in table.itertuples(index=False):
        print(f"{row[0]:<{width}}  {row[1]:9.1f}  {row[2]:9.1f}")
    print(f"{'total (build_report)':<{width}}  {cold_total:9.1f}  {warm_total:9.1f}")
    print(f"\ntarget: under 60 s; {'met' if warm_total < 60 else 'NOT met'} warm, {'met' if cold_total < 60 else 'NOT met'} cold")


if __name__ == "__main__":
    main()
