"""``python study/run.py``: the facestudy hyperparameter study, on this machine or on a Ray cluster.

    python study/run.py --preset local --data ../shared/fer2013/fer2013.csv.gz
    ray submit cluster/cluster.yaml study/run.py -- --preset full --data /data/fer2013.csv.gz
    ray job submit --working-dir . -- python study/run.py --preset full ...

It joins a Ray cluster only when given one (``--address`` or ``RAY_ADDRESS``) and otherwise starts its own
Ray instance here, on loopback. See the README for the YAML fields.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

if not __package__:  # run as a script: the checkout, not study/, goes first, so study/*.py shadow nothing
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from denoise_core.cli import ArgumentParser, run_cli, setup_logging  # noqa: E402
from denoise_core.data import resolve_data_path  # noqa: E402
from denoise_core.errors import MissingFile  # noqa: E402
from denoise_core.settings import Flag, Layers, add_flags, add_layer_arguments, read_layers  # noqa: E402
from denoise_core.fit import TrainConfig  # noqa: E402
from study.config import PRESETS, StudyConfig, check_name, load_preset, resume_command, new_study, resumed_study, storage_root, study_report_options, to_yaml  # noqa: E402

DEFAULT_PRESET = "local"


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[Flag]]:
    parser = ArgumentParser(
        prog="study/run.py", description="Search for the best FER2013 denoiser with Ray Tune + Optuna.",
        epilog="Settings: field defaults < --preset < --config FILE < flags < --set KEY=VALUE (values are YAML; a text setting's "
               "flag takes its value as written). A flag's default is the field's; the preset may set its own. The training "
               "settings (train.*) have the train CLI's flags (--lr, --model-dropout; train.seed is --train-seed). On --resume "
               f"the saved study.yaml is the base, and only {', '.join(StudyConfig.RESUMABLE)} may change.")
    parser.add_argument("--preset", choices=PRESETS, default=None,
                        help="starting point: smoke (tests), local (the first run, ~5 min on 2 CPUs), workstation (one machine, ~30 min on 2 CPUs), "
                             f"full (cluster) (default: {DEFAULT_PRESET}; on --resume only the default --name)")
    parser.add_argument("--resume", action="store_true", help="continue the study STORAGE/NAME after an interruption")
    parser.add_argument("--address", help="Ray cluster to join (default: $RAY_ADDRESS; with neither, a Ray instance of its own on "
                                           "127.0.0.1 with token auth, never a cluster started with `ray start`)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a new local Ray instance")
    add_layer_arguments(parser, "YAML file of study settings, applied over the preset",
                        "--set train.lr=1e-3 or --set search.lr='{loguniform: [1e-4, 1e-2]}'")
    flags = add_flags(parser, StudyConfig, skip=("train", "search"), shown={"name": f"the preset's name, {DEFAULT_PRESET} without --preset"})
    flags += add_flags(parser, TrainConfig, prefix="train.", taken=frozenset(flag.name for flag in flags))
    return parser.parse_args(argv), flags


def resolve(args: argparse.Namespace, flags: list[Flag]) -> StudyConfig:
    """The study to run: a new one from the preset, or on --resume exactly the saved one (with the allowed changes)."""
    layers = read_layers(args, flags)
    if not args.resume:
        return new_study(args.preset or DEFAULT_PRESET, layers)
    from study import storage

    study_uri = resumed_study_uri(args.preset or DEFAULT_PRESET, layers)
    if not storage.exists(f"{study_uri}/study.yaml"):
        raise MissingFile(f"nothing to resume: no study at {study_uri}; start it without --resume")
    if args.preset:
        print(f"study/run.py: --resume continues the saved study.yaml; --preset {args.preset} names the study only", file=sys.stderr)
    return resumed_study(storage.read_bytes(f"{study_uri}/study.yaml"), layers)


def resumed_study_uri(preset: str, layers: Layers) -> str:
    """Where the study to resume is: ``--name`` and ``--storage`` if given (in the file or the flags), else the preset's
    name under the default storage."""
    given = {**layers.file, **dict(layers.assignments)}
    name = str(given.get("name", load_preset(preset).get("name", StudyConfig.name)))
    check_name(name)
    return f"{storage_root(str(given.get('storage', StudyConfig.storage)))}/{name}"


def main(argv: list[str] | None = None) -> None:
    args, flags = parse_args(argv)

    def run() -> int | None:
        config = resolve(args, flags)
        setup_logging(verbose=config.verbose > 1, quiet=config.verbose < 2)
        from study.lock import study_lock
        from study.study import preflight

        preflight(config, resume=args.resume, joining=bool(args.address or os.environ.get("RAY_ADDRESS")))
        with study_lock(config.study_uri):
            return drive(config, args)

    run_cli(run, "study/run.py")


def drive(config: StudyConfig, args: argparse.Namespace) -> int | None:
    """Ray, the study and its report, once the checks that need no Ray have passed and this driver holds the study's lock."""
    from study.study import connect, run_study

    if config.verbose > 1:
        print(f"study configuration:\n{to_yaml(config)}", flush=True)
    elif config.verbose:
        train = config.train
        print(f"study {config.study_uri}: {config.num_samples} trials of up to {train.epochs} epochs on "
              f"{train.train_size or 'all'} training faces, searching {', '.join(config.search) or 'nothing'}; "
              f"settings in study.yaml there (--verbose 2 prints them, and Ray's own progress)", flush=True)
    if config.verbose < 2:
        quiet_ray()
    connect(args.address, args.num_cpus, config.verbose, dashboard=config.train_workers > 0)
    summary = run_study(config, resume=args.resume)
    print(f"\ntrials ({len(summary.trials)}):")
    columns = [c for c in summary.trials.columns if c not in ("path", "checkpoint", "node_ip", "time_s", "parameters")]
    print(summary.trials[columns].rename(columns=lambda c: c.removeprefix("param_").rsplit(".", 1)[-1])
          .to_string(index=False, max_colwidth=24, float_format=lambda v: f"{v:.4g}"))
    if summary.interrupted:
        print(f"study/run.py: study interrupted, nothing exported; continue it with: {resume_command(config)}", file=sys.stderr)
        return 128 + (summary.stop_signal or signal.SIGINT)
    if summary.holdout is not None:
        print(f"\nbest trial {summary.best_trial} on the fixed noisy hold-out (test faces not in Training):")
        print(summary.holdout.drop(columns=["trial_id"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if config.verbose and config.report and summary.best_model:
        print("\nbuilding the report (results.report) ...", flush=True)
    report = build_study_report(config, summary)
    print(f"\nstudy directory: {summary.study_uri}")
    if summary.best_model is None:
        print("no trial finished with a usable model; the trial table above says why")
        return 1
    print("what to do next:")
    if report:
        print(f"  read the report:          {report}/index.html")
    print(f"  denoise your own faces:   python -m denoise_core.denoise --model {summary.best_model} IN.png OUT.png")
    print(f"  compare the trials:       tensorboard --logdir {summary.study_uri}  (or {summary.study_uri}/trials.csv)")
    print(f"  replay the best trial:    python -m denoise_core.train --config {summary.study_uri}/best/train.yaml --data {resolve_data_path(config.data)} --out runs/best")
    print(f"  rebuild the report:       python -m results.report {summary.study_uri} --overwrite")


def quiet_ray() -> None:
    """Ray's, Tune's and Optuna's own progress off: this program prints the study's progress in its own words."""
    import logging

    import optuna

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter prints nothing at verbose 0
    for name in ("ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Ray's notice that its default token authentication is on (it stays on; the notice opens every run)
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def build_study_report(config, summary):
    """``results.report`` on the finished study, when it lives on this machine's disk."""
    if not config.report or summary.best_model is None:
        return None
    if "://" in summary.study_uri:
        print("\nreport skipped for remote storage; fetch the study and run: python -m results.report STUDY_DIR")
        return None
    from results.report import build_report

    show_report_progress(config.verbose)
    return build_report(Path(summary.study_uri), config.data, study_report_options(config))


def show_report_progress(verbose: int) -> None:
    """The report's own log lines (a line per step and per classical filter) on the console from verbose 1: the study's
    logging keeps only warnings, and the report takes minutes."""
    import logging

    if verbose:
        logging.getLogger("results").setLevel(logging.INFO)


if __name__ == "__main__":
    main()
