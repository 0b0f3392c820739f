"""Does bf16 training cost quality? The ``local`` preset's configuration trained in fp32 and at ``auto``, seed by seed.

    python bench/precision_quality.py [--data PATH] [--seeds 0 1 2] [--threads 1] [--quick]

The configuration is the ``local`` preset's fixed training settings (with its gated output), trained for the preset's epochs on its training faces, at each seed in fp32 and at
``precision: auto`` (what ``auto`` resolves to on this machine is printed). Each run is scored on the validation
faces (its best epoch) and on the preset's first 300 hold-out faces at S&P 0.1, 0.3, 0.5 and 0.7. The table gives
each seed's numbers, the mean difference auto - fp32 over seeds and its spread (min and max over seeds): the
issue's bar is a mean within 0.05 dB on validation and on the hold-out. Runs take turns, one after the other, so
their times compare too (on a busy machine, only roughly).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from importlib import resources
from pathlib import Path

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.data import default_cache_dir, load_splits  # noqa: E402
from denoise_core.evaluate import evaluate_on_holdout, model_denoiser  # noqa: E402
from denoise_core.fit import TrainConfig, fit, with_resolved_precision  # noqa: E402
from denoise_core.holdout import holdout_for  # noqa: E402
from denoise_core.model import ConvAutoencoder, model_config_from_dict  # noqa: E402
from denoise_core.settings import build, load_yaml  # noqa: E402
from bench.tables import markdown_table  # noqa: E402

CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7")
HOLDOUT_FACES = 300


def local_config(quick: bool) -> TrainConfig:
    """The local preset's fixed training settings (its gated output); ``quick`` shrinks them to a smoke test."""
    preset = load_yaml(resources.files("study.presets").joinpath("local.yaml").read_text(), "preset local")
    config = replace(build(TrainConfig, preset["train"]), device="cpu")
    return replace(config, epochs=1, train_size=256, val_size=64) if quick else config


def one_run(config: TrainConfig, splits, holdout, faces: int) -> dict[str, float]:
    started = time.perf_counter()
    result = fit(config, splits)
    seconds = time.perf_counter() - started
    model = ConvAutoencoder(model_config_from_dict(result.checkpoint["config"]["model"]))
    model.load_state_dict(result.checkpoint["best_model_state"])
    table = evaluate_on_holdout(model_denoiser(model.eval(), "cpu"), holdout, CONDITIONS, faces)
    return {"val_psnr": result.best["val_psnr"], **{f"test_{c}": float(p) for c, p in zip(table["condition"], table["psnr"])},
            "test_mean": float(table["psnr"].mean()), "seconds": seconds}


def compare(config: TrainConfig, seeds: list[int], splits, holdout, faces: int) -> pd.DataFrame:
    auto = with_resolved_precision(replace(config, precision="auto")).precision
    rows = []
    for seed in seeds:
        for precision in ("fp32", auto):
            rows.append({"seed": seed, "precision": precision, **one_run(replace(config, seed=seed, precision=precision), splits, holdout, faces)})
            print(f"seed {seed} {precision}: val {rows[-1]['val_psnr']:.3f} dB, hold-out mean {rows[-1]['test_mean']:.3f} dB, "
                  f"{rows[-1]['seconds']:.0f} s", flush=True)
    return pd.DataFrame(rows)


def differences(runs: pd.DataFrame) -> pd.DataFrame:
    """Per score: the mean over seeds of (auto - fp32), and its min and max over seeds."""
    scores = [c for c in runs.columns if c.startswith(("val_", "test_")) or c == "seconds"]
    wide = runs.pivot(index="seed", columns="precision", values=scores)
    other = [p for p in runs["precision"].unique() if p != "fp32"][0]
    rows = []
    for score in scores:
        delta = wide[(score, other)] - wide[(score, "fp32")]
        rows.append({"score": score, "fp32 mean": wide[(score, "fp32")].mean(), f"{other} mean": wide[(score, other)].mean(),
                     "difference": delta.mean(), "min": delta.min(), "max": delta.max()})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/precision_quality.py", description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="FER2013 file (default: $FER2013_PATH)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run (default 1)")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 epoch on 256 faces, 32 hold-out faces")
    args = parser.parse_args(argv)
    config = replace(local_config(args.quick), num_threads=args.threads)
    splits = load_splits(args.data)
    faces = 32 if args.quick else HOLDOUT_FACES
    holdout = holdout_for(splits.test_unique, default_cache_dir(), CONDITIONS)
    runs = compare(config, args.seeds, splits, holdout, faces)
    print(f"\nper run ({len(args.seeds)} seeds, {config.epochs} epochs on {config.train_size} faces, {faces} hold-out faces, "
          f"{args.threads} thread(s)):\n")
    print("\n".join(markdown_table(runs.round(3).to_dict("records"))))
    print("\nauto - fp32 (mean over seeds, min and max):\n")
    print("\n".join(markdown_table(differences(runs).round(3).to_dict("records"))))


if __name__ == "__main__":
    main()
