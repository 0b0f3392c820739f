"""``python study/run_experiment.py FILE``: a controlled experiment (one factor, its levels, several seeds) on Ray Tune.

    python study/run_experiment.py study/experiments/bottleneck.yaml --data ../shared/fer2013/fer2013.csv.gz --num-cpus 2
    python study/run_experiment.py study/experiments/loss.yaml --set name=loss-tiny --set seeds=[0,1] --set train.epochs=1

Its own entry beside ``study/run.py``: the search's presets, trial counts and ASHA settings mean nothing for a
grid of levels x seeds. The experiment file is described in ``study/experiment.py`` and the README; at the end
``results.experiment_report`` writes the report into the experiment's directory.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

if not __package__:  # run as a script: the checkout, not study/, goes first, so study/*.py shadow nothing
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from denoise_core.cli import ArgumentParser, run_cli, setup_logging  # noqa: E402
from denoise_core.settings import parse_assignment  # noqa: E402
from study.experiment import ExperimentConfig, load_experiment  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog="study/run_experiment.py", description="Run a controlled experiment: a grid of levels x seeds, one budget.",
                            epilog="Settings: the file < --data/--name/--storage < --set KEY=VALUE (values are YAML). "
                                   "On --resume the same file and settings must be given; only data, verbose and report may change.")
    parser.add_argument("experiment", help="experiment file (study/experiments/*.yaml)")
    parser.add_argument("--data", help="FER2013 file or folder (default: $FER2013_PATH)")
    parser.add_argument("--name", help="directory name under the storage (default: the file's name:)")
    parser.add_argument("--storage", help="where experiments live (default: ./studies)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting, e.g. --set seeds=[0,1] --set train.epochs=1 --set train.train_size=500")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted experiment STORAGE/NAME")
    parser.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a new local instance)")
    parser.add_argument("--num-cpus", type=int, help="CPUs for a new local Ray instance")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> ExperimentConfig:
    flags = [(key, getattr(args, key)) for key in ("data", "name", "storage") if getattr(args, key) is not None]
    return load_experiment(args.experiment, flags + [parse_assignment(item) for item in args.set])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)

    def run() -> int | None:
        config = resolve(args)
        setup_logging(verbose=config.verbose > 1, quiet=config.verbose < 1)
        import ray

        from study.experiment import preflight, score_experiment, train_grid
        from study.run import quiet_ray
        from study.study import connect

        _, base = preflight(config, args.resume)
        trials = len(config.levels) * len(config.seeds)
        epochs = "its level's epochs" if config.factor == "epochs" else f"{base.epochs} epochs"
        print(f"experiment {config.uri}: {config.factor} at {', '.join(config.names)} x {len(config.seeds)} seeds = {trials} trials of "
              f"{epochs} on {base.train_size or 'all'} training faces", flush=True)
        if config.verbose < 2:
            quiet_ray()
        connect(args.address, args.num_cpus, config.verbose)
        summary = train_grid(config, resume=args.resume)
        print(summary.trials.drop(columns=["checkpoint"]).to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if summary.interrupted:
            print("study/run_experiment.py: experiment interrupted, nothing scored; continue it with the same command and --resume",
                  file=sys.stderr)
            return 128 + signal.SIGINT
        ray.shutdown()  # the scoring needs no Ray; a local instance's daemons would only compete for the CPUs
        print("scoring every trial's best weights on the hold-out, per face ...", flush=True)
        summary = score_experiment(summary, config)
        print(f"\nexperiment directory: {summary.path} (per-face hold-out scores in scores.parquet)")
        if config.report and "://" not in str(summary.path):
            from results.experiment_report import build_experiment_report

            report = build_experiment_report(summary.path)
            print(f"report: {report / 'index.html'}\nrebuild it: python -m results.experiment_report {summary.path} --overwrite")
        return 0 if (summary.trials["status"] == "completed").all() else 1

    run_cli(run, "study/run_experiment.py")


if __name__ == "__main__":
    main()
