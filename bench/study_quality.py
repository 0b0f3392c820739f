"""Study quality benchmark: does the study find strong denoisers by itself?

    python bench/study_quality.py --data PATH                                   # runs the local preset (~5 min on 2 cores)
    python bench/study_quality.py --data PATH --workstation studies/workstation # and scores a finished workstation study
    python bench/study_quality.py --data PATH --run-workstation                 # runs that one too (~30 min on 2 cores)
    python bench/study_quality.py --data PATH --no-local --replaces studies/impulse models/fer2013-impulse.pt

Table 1: the ``local`` preset run end to end from scratch (the README's first command, report included),
its best model against the switching median at salt-and-pepper 0.1, 0.3, 0.5 and 0.7 on the fixed hold-out
(the bar: +1 dB). Table 2: the ``workstation`` preset's best model against a blind model (``--against``, default
``models/base/fer2013-blind.pt``, the first blind model, which a workstation study made; the README's table was measured
against the hand-made one of commit bad0091: ``git show bad0091:models/fer2013-blind.pt > blind-bad0091.pt``)
at every hold-out condition on every hold-out face (the bar: no condition more than 0.2 dB below). Table 3
(``--replaces STUDY MODEL``, repeatable): a study's best model against the shipped model it would replace, at every
condition the study scored, on every hold-out face; a shipped file is replaced only by a model at least as good at
every one. Each table is measured in one run, side by side, on the same faces.
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
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.baselines import switching_median  # noqa: E402
from denoise_core.checkpoint import load_model  # noqa: E402
from denoise_core.data import default_cache_dir, load_splits, resolve_data_path  # noqa: E402
from denoise_core.evaluate import model_denoiser  # noqa: E402
from denoise_core.holdout import DEFAULT_CONDITIONS, holdout_for  # noqa: E402
from denoise_core.settings import load_yaml_file  # noqa: E402
from denoise_core.study_files import BEST_MODEL, STUDY_CONFIG  # noqa: E402
from results.curves import model_curves  # noqa: E402

LOCAL_BAR = {"sp:0.1": 1.0, "sp:0.3": 1.0, "sp:0.5": 1.0, "sp:0.7": 1.0}  # dB over the switching median
WORKSTATION_TOLERANCE = 0.2  # dB below the --against model at most, at every condition
QUIET = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0", "RAY_ADDRESS": ""}


def run_preset(preset: str, data: str, storage: Path, name: str, extra: list[str]) -> float:
    """Wall seconds of ``python study/run.py --preset PRESET``, as a user runs it (its closing report included)."""
    command = [sys.executable, str(REPO_ROOT / "study" / "run.py"), "--preset", preset, "--data", data, "--storage", str(storage),
               "--name", name, *extra]
    started = time.perf_counter()
    log = storage / f"{name}.log"
    with open(log, "w") as handle:
        finished = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env={**os.environ, **QUIET})
    if finished.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({finished.returncode}); see {log}")
    return time.perf_counter() - started


def scores(model_file: Path, holdout, conditions: tuple[str, ...], faces: int | None) -> pd.DataFrame:
    model, _ = load_model(model_file)
    return model_curves({"model": model_denoiser(model, torch.device("cpu"))}, holdout, conditions, faces).set_index("condition")


def local_table(study: Path, splits, faces: int) -> pd.DataFrame:
    conditions = tuple(LOCAL_BAR)
    holdout = holdout_for(splits.test_unique, default_cache_dir(), conditions)
    model = scores(study / BEST_MODEL, holdout, conditions, faces)
    median = model_curves({"switching_median": switching_median}, holdout, conditions, faces).set_index("condition")
    rows = []
    for condition, needed in LOCAL_BAR.items():
        margin = model.at[condition, "psnr"] - median.at[condition, "psnr"]
        rows.append({"condition": condition, "study's best model": f"{model.at[condition, 'psnr']:.2f} / {model.at[condition, 'ssim']:.3f}",
                     "switching median": f"{median.at[condition, 'psnr']:.2f} / {median.at[condition, 'ssim']:.3f}",
                     "margin (dB)": f"{margin:+.2f}", "needed": f"+{needed:.1f}", "met": "yes" if margin >= needed else "NO"})
    return pd.DataFrame(rows)


def workstation_table(study: Path, against: Path, splits, faces: int | None) -> pd.DataFrame:
    holdout = holdout_for(splits.test_unique, default_cache_dir(), DEFAULT_CONDITIONS)
    model = scores(study / BEST_MODEL, holdout, DEFAULT_CONDITIONS, faces)
    shipped = scores(against, holdout, DEFAULT_CONDITIONS, faces)
    rows = []
    for condition in DEFAULT_CONDITIONS:
        difference = model.at[condition, "psnr"] - shipped.at[condition, "psnr"]
        rows.append({"condition": condition, "study's best model": f"{model.at[condition, 'psnr']:.2f} / {model.at[condition, 'ssim']:.3f}",
                     against.name: f"{shipped.at[condition, 'psnr']:.2f} / {shipped.at[condition, 'ssim']:.3f}",
                     "difference (dB)": f"{difference:+.2f}", "met (>= -0.2)": "yes" if difference >= -WORKSTATION_TOLERANCE else "NO"})
    return pd.DataFrame(rows)


def replacement_table(study: Path, shipped: Path, splits) -> pd.DataFrame:
    """The study's best model against ``shipped`` at every condition the study scored its best model on."""
    conditions = tuple(load_yaml_file(study / STUDY_CONFIG, "study file")["holdout_conditions"])
    holdout = holdout_for(splits.test_unique, default_cache_dir(), conditions)
    model, current = scores(study / BEST_MODEL, holdout, conditions, None), scores(shipped, holdout, conditions, None)
    rows = []
    for condition in conditions:
        difference = model.at[condition, "psnr"] - current.at[condition, "psnr"]
        rows.append({"condition": condition, "study's best model": f"{model.at[condition, 'psnr']:.2f} / {model.at[condition, 'ssim']:.3f}",
                     shipped.name: f"{current.at[condition, 'psnr']:.2f} / {current.at[condition, 'ssim']:.3f}",
                     "difference (dB)": f"{difference:+.2f}", "at least as good": "yes" if difference >= 0 else "NO"})
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/study_quality.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FER2013 file (default: $FER2013_PATH)")
    parser.add_argument("--local", type=Path, help="score this finished local study instead of running the preset")
    parser.add_argument("--workstation", type=Path, help="a finished workstation study directory to score")
    parser.add_argument("--run-workstation", action="store_true", help="run the workstation preset too (hours on a CPU)")
    parser.add_argument("--against", type=Path, default=REPO_ROOT / "models" / "base" / "fer2013-blind.pt",
                        help="the blind model the workstation study is compared with (default: models/base/fer2013-blind.pt, "
                             "the workstation study's model the default model was fine-tuned from)")
    parser.add_argument("--faces", type=int, default=300, help="hold-out faces for the local table (the local preset scores 300)")
    parser.add_argument("--no-local", action="store_true", help="leave out the local preset's table")
    parser.add_argument("--replaces", nargs=2, action="append", default=[], type=Path, metavar=("STUDY", "MODEL"),
                        help="compare a finished study's best model with the shipped MODEL it would replace, at every condition it scored")
    args = parser.parse_args(argv)
    data = str(resolve_data_path(args.data).resolve())
    splits = load_splits(data)
    with tempfile.TemporaryDirectory() as scratch:
        storage = Path(scratch)
        local, local_seconds = args.local, None
        if local is None and not args.no_local:
            local_seconds = run_preset("local", data, storage, "local", [])
            local = storage / "local"
        if local is not None:
            print(f"\nlocal preset ({local}): best model vs switching median on the first {args.faces} hold-out faces (PSNR dB / SSIM)"
                  + (f"; wall time {local_seconds / 60:.1f} min end to end on {os.cpu_count()} CPUs" if local_seconds else ""))
            local_rows = local_table(local, splits, args.faces)
            print(markdown(local_rows))
            print(f"bar met at {int((local_rows['met'] == 'yes').sum())} of {len(local_rows)} densities")
        workstation, seconds = args.workstation, None
        if args.run_workstation:
            seconds = run_preset("workstation", data, storage, "workstation", [])
            workstation = storage / "workstation"
        if workstation is not None:
            print(f"\nworkstation preset ({workstation}): best model vs {args.against} on all {len(splits.test_unique)} hold-out faces"
                  + (f"; wall time {seconds / 3600:.2f} h" if seconds else ""))
            rows = workstation_table(workstation, args.against, splits, None)
            print(markdown(rows))
            print(f"within {WORKSTATION_TOLERANCE} dB (or better) at {int((rows['met (>= -0.2)'] == 'yes').sum())} of {len(rows)} conditions")
        for study, shipped in args.replaces:
            print(f"\n{study}: best model vs the shipped {shipped} on all {len(splits.test_unique)} hold-out faces (PSNR dB / SSIM)")
            rows = replacement_table(study, shipped, splits)
            print(markdown(rows))
            print(f"at least as good at {int((rows['at least as good'] == 'yes').sum())} of {len(rows)} conditions")


if __name__ == "__main__":
    main()
