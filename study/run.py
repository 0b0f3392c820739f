"""``python study/run.py``: the facestudy hyperparameter study, on this machine or on a Ray cluster.

    python study/run.py --preset local --data ../shared/fer2013/fer2013.csv.gz
    ray submit cluster/cluster.yaml study/run.py -- --preset full --data /data/fer2013.csv.gz
    ray job submit --working-dir . -- python study/run.py --preset full ...

It joins a running cluster (``--address``, ``RAY_ADDRESS``, or a local ``ray start``) and otherwise starts
Ray here. See the README for the YAML fields.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parent.parent)  # the checkout, not study/, so study/*.py shadow nothing

from denoise_core.cli import run_cli, setup_logging  # noqa: E402
from study.config import PRESETS, QUICK_REPORT, StudyConfigError, build_config, to_yaml  # noqa: E402

FLAG_FIELDS = {"data": str, "name": str, "storage": str, "num_samples": int, "max_concurrent": int, "train_workers": int,
               "cpus_per_worker": float, "gpus_per_trial": float, "seed": int, "holdout_faces": int}
TRAIN_FLAGS = {"epochs": int, "train_size": int, "val_size": int, "batch_size": int}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="study/run.py", description="Search for the best FER2013 denoiser with Ray Tune + Optuna.")
    parser.add_argument("--preset", choices=PRESETS, default="local", help="starting point: smoke (tests), local (debug), full (cluster)")
    parser.add_argument("--config", help="YAML file of study settings, applied over the preset")
    parser.add_argument("--resume", action="store_true", help="continue the study STORAGE/NAME after an interruption")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, a local `ray start`, else a new local instance)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a new local Ray instance")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override one field, e.g. train.lr=0.001 (YAML value)")
    for name, kind in {**FLAG_FIELDS, **TRAIN_FLAGS}.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, default=None)
    return parser.parse_args(argv)


def overrides_from(args: argparse.Namespace) -> dict:
    import yaml

    values: dict = {k: getattr(args, k) for k in FLAG_FIELDS if getattr(args, k) is not None}
    train = {k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k) is not None}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep:
            raise StudyConfigError(f"--set {item!r}: write KEY=VALUE, e.g. --set train.lr=0.001")
        value = yaml.safe_load(raw)
        if key.startswith("train."):
            train[key[len("train."):]] = value
        else:
            values[key] = value
    if train:
        values["train"] = train
    return values


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> int | None:
        config = build_config(args.preset, args.config, overrides_from(args))
        setup_logging(config.verbose > 1)
        from study.study import connect, run_study

        if args.resume:
            config = resume_config(config)
        print(f"study configuration:\n{to_yaml(config)}", flush=True)
        connect(args.address, args.num_cpus, config.verbose)
        summary = run_study(config, resume=args.resume)
        if summary.interrupted:
            print(f"\nstudy interrupted; continue it with: python study/run.py --name {config.name} --storage {config.storage} --resume")
            return 130
        print(f"\ntrials ({len(summary.trials)}):")
        columns = [c for c in summary.trials.columns if c not in ("path", "checkpoint", "node_ip")]
        print(summary.trials[columns].to_string(index=False, max_colwidth=40))
        if summary.holdout is not None:
            print(f"\nbest trial {summary.best_trial} on the fixed noisy hold-out (test faces not in Training):")
            print(summary.holdout.drop(columns=["trial_id"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        report = build_study_report(config, summary)
        print(f"\nstudy directory: {summary.study_uri}")
        if report:
            print(f"report:          {report}/index.html")
        print(f"best model:      {summary.best_model}")
        print(f"trial table:     {summary.study_uri}/trials.csv (.parquet)")
        print(f"TensorBoard:     tensorboard --logdir {summary.study_uri}")

    run_cli(run, "study/run.py")


def build_study_report(config, summary):
    """``results.report`` on the finished study, when it lives on this machine's disk."""
    if not config.report or summary.best_model is None:
        return None
    if "://" in summary.study_uri:
        print("\nreport skipped for remote storage; fetch the study and run: python -m results.report STUDY_DIR")
        return None
    from results.report import ReportOptions, build_report

    sizes = {key: tuple(value) if key == "bm3d_conditions" else value or None  # faces: 0 means all
             for key, value in {**QUICK_REPORT, **config.report_options}.items()}
    return build_report(Path(summary.study_uri), config.data, ReportOptions(**sizes))


def resume_config(config):
    """On --resume the saved study.yaml wins, so the resumed study is the one that was started."""
    import yaml

    from study import storage
    from study.config import build_config

    saved_uri = f"{config.study_uri}/study.yaml"
    if not storage.exists(saved_uri):
        raise FileNotFoundError(f"nothing to resume: no study at {config.study_uri}; start it without --resume")
    saved = yaml.safe_load(storage.read_bytes(saved_uri))
    saved.update(name=config.name, storage=config.storage, data=config.data or saved.get("data"))
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(saved, handle)
    return build_config("smoke", handle.name, {})


if __name__ == "__main__":
    main()
