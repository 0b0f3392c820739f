"""What the study's ASHA costs a small study on 2 cores, and what it keeps: a Monte Carlo of the scheduler itself.

    python bench/asha_cost.py [--preset workstation] [--samples 10 14] [--studies 2000] [--quick]

Each simulated study draws ``num_samples`` trials of true quality q ~ N(0, 1). A trial's validation score after epoch
e is q - 1/e (every trial learns the same way) plus noise of standard deviation ``NOISE / sqrt(e)`` (later epochs rank
trials better). The trials run ``max_concurrent`` at a time, in the order they were drawn, as the preset runs them:
an epoch takes ``--pair-s`` seconds while two trials train and ``--alone-s`` while one trains alone (the workstation
study's epochs of 28,698 faces, measured on 2 cores on 2026-12-03: 95 to 140 s beside another trial, 79 to 86 s
alone). Every result goes to the scheduler object the study builds (``study.study.trial_scheduler``: Ray's
``ASHAScheduler``, or ``study.asha.RevokingASHA`` with ``revoke_promotions``), as Tune hands it over; a stopped trial
frees its slot for the next one.

Per scheduler and trial count, over the simulated studies: the epochs trained (mean, 10th and 90th percentile), the
trials' wall minutes (mean and 90th percentile), how many trials train to ``max_t``, and what the study exports, the
trial with the best validation score at any epoch: the share of studies where that is the truly best trial, and its
mean q (how good a model the study finds). The learning-curve model is an assumption, not a measurement: the
numbers compare schedulers on the same draws; the time of a real study is measured by running it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench.tables import markdown_table  # noqa: E402
from study.config import StudyConfig, build_config  # noqa: E402
from study.study import trial_scheduler  # noqa: E402

NOISE = 0.6  # score noise at epoch 1, in units of the spread of true quality between trials
PAIR_S, ALONE_S = 118.0, 82.0  # seconds an epoch, two trials training / one alone (the workstation study's, above)
QUICK_STUDIES = 50


@dataclass(frozen=True)
class Trial:
    trial_id: str


@dataclass(frozen=True)
class Outcome:
    epochs: int
    minutes: float
    to_max_t: int
    exported_best: bool
    exported_q: float


def simulate(config: StudyConfig, rng: np.random.Generator, pair_s: float, alone_s: float) -> Outcome:
    """One study: the trials through the study's scheduler, ``config.max_concurrent`` at a time."""
    scheduler = trial_scheduler(config)
    scheduler.set_search_properties(config.metric, config.mode)
    quality = rng.normal(size=config.num_samples)
    trials = [Trial(str(index)) for index in range(config.num_samples)]
    waiting, running = list(range(config.num_samples)), {}  # running: index -> share of its current epoch done
    epochs, best_score = np.zeros(config.num_samples, dtype=int), np.full(config.num_samples, -np.inf)
    clock, slots = 0.0, config.max_concurrent
    while waiting or running:
        while waiting and len(running) < slots:
            index = waiting.pop(0)
            scheduler.on_trial_add(None, trials[index])
            running[index] = 0.0
        epoch_s = pair_s if len(running) > 1 else alone_s
        step = min(1.0 - done for done in running.values())
        clock += step * epoch_s
        for index in list(running):
            running[index] += step
            if running[index] < 1.0 - 1e-9:
                continue
            epochs[index] += 1
            epoch = int(epochs[index])
            score = quality[index] - 1.0 / epoch + rng.normal() * NOISE / np.sqrt(epoch)
            best_score[index] = max(best_score[index], score)
            result = {"training_iteration": epoch, config.metric: float(score)}
            if scheduler.on_trial_result(None, trials[index], result) == "STOP" or epoch >= config.max_epochs:
                scheduler.on_trial_complete(None, trials[index], result)
                del running[index]
            else:
                running[index] = 0.0
    exported = int(np.argmax(best_score))
    return Outcome(int(epochs.sum()), clock / 60, int((epochs >= config.max_epochs).sum()), exported == int(np.argmax(quality)),
                   float(quality[exported]))


def row(config: StudyConfig, studies: int, seed: int, pair_s: float, alone_s: float) -> dict[str, object]:
    """The table's row for one scheduler and trial count: every scheduler sees the same draws (``seed``)."""
    rng = np.random.default_rng(seed)
    outcomes = [simulate(config, rng, pair_s, alone_s) for _ in range(studies)]
    epochs = np.array([o.epochs for o in outcomes])
    minutes = np.array([o.minutes for o in outcomes])
    return {"scheduler": "revoking ASHA" if config.revoke_promotions else "Ray's ASHA", "trials": config.num_samples,
            "epochs": round(float(epochs.mean()), 1), "epochs p10-p90": f"{np.percentile(epochs, 10):.0f}-{np.percentile(epochs, 90):.0f}",
            "trial minutes": round(float(minutes.mean()), 1), "minutes p90": round(float(np.percentile(minutes, 90)), 1),
            "trials to max_t": round(float(np.mean([o.to_max_t for o in outcomes])), 2),
            "exports the best": round(float(np.mean([o.exported_best for o in outcomes])), 2),
            "exported q": round(float(np.mean([o.exported_q for o in outcomes])), 2)}


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="workstation", help="the preset whose ASHA settings and concurrency are simulated (default: workstation)")
    parser.add_argument("--samples", type=int, nargs="+", help="trial counts to simulate (default: the preset's)")
    parser.add_argument("--studies", type=int, default=2000, help="simulated studies per row (default: 2000)")
    parser.add_argument("--pair-s", type=float, default=PAIR_S, help=f"seconds an epoch while two trials train (default: {PAIR_S:g})")
    parser.add_argument("--alone-s", type=float, default=ALONE_S, help=f"seconds an epoch of a trial training alone (default: {ALONE_S:g})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STUDIES} studies a row: a smoke test of the table, not a measurement")
    args = parser.parse_args(argv)
    preset = build_config(args.preset)
    if preset.scheduler != "asha":
        parser.error(f"the {args.preset} preset runs no ASHA (scheduler: {preset.scheduler}); pick one that does")
    if preset.max_concurrent < 1:
        parser.error(f"the {args.preset} preset runs as many trials at a time as its cluster allows; pick one that sets max_concurrent")
    studies = QUICK_STUDIES if args.quick else args.studies
    rows = [row(replace(preset, num_samples=samples, revoke_promotions=revoke), studies, args.seed, args.pair_s, args.alone_s)
            for samples in args.samples or [preset.num_samples] for revoke in (False, True)]
    print(f"ASHA on the {args.preset} preset: grace_period {preset.grace_period}, reduction_factor {preset.reduction_factor}, max_t "
          f"{preset.max_epochs}, {preset.max_concurrent} trials at a time; {studies} simulated studies a row, epochs of {args.pair_s:g} s "
          f"beside another trial and {args.alone_s:g} s alone")
    print("\n".join(markdown_table(rows)))
    return rows


if __name__ == "__main__":
    main()
