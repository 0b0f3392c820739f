"""``python -m results.findings``: ``docs/findings.md``, regenerated from the controlled experiments and a trained model by one command.

    python -m results.findings --experiments runs/experiments --model models/fer2013-blind.pt --out docs/findings.md --overwrite

It never trains. For each seed question it reads a finished experiment directory under ``--experiments``
(``experiment.yaml``, ``trials.csv``, ``scores.parquet``) and gives what ``results.experiment_report`` computes: each
level's mean PSNR and SSIM over seeds with its 95% interval at every condition, and the paired differences between
levels with their verdicts. For each of the seed's findings it runs ``results.analysis`` on the fixed hold-out with
``--model`` (several: one setting trained from several seeds, so the intervals cover seeds too), and the filled-in test
on the width and epochs experiments' models. It writes Markdown only, with no figure (so no face). The file's first
line marks it as this program's output: an existing file is replaced only with ``--overwrite`` and only when it
carries that marker, so a file of the user's own is never overwritten.
"""

from __future__ import annotations

import argparse
import logging
import math
import shlex
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import pandas as pd

from denoise_core.checkpoint import load_model
from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.data import default_cache_dir, load_splits
from denoise_core.errors import InputError, MissingFile
from denoise_core.evaluate import Denoiser, model_denoiser
from denoise_core.holdout import Holdout, holdout_for
from denoise_core.inference import resolve_device
from results.analysis import (METHOD, Finding, LevelModels, contrast_split, evidence_table, expected_findings, filled_in_experiments, memoised,
                              misalignment, oversmoothing, region_errors, ssim_vs_psnr, subset)
from results.analysis.common import PREFERRED_CONDITIONS
from results.experiment_report import Experiment, design_text, interval_table, question_text, read_experiment
from results.html import Section, Table, Text, render_markdown
from results.models import experiment_models
from results.output import check_file_output, publish_file
from results.statistics import level_summary, pair_summary, pairwise_differences, verdict_table

log = logging.getLogger("results.findings")
KIND = "findings"
PROGRAM = "python -m results.findings"
FILLED_IN = {"model.base_width": ("under-parameterised", True), "epochs": ("stopped early", True), "model.bottleneck_size": ("under-parameterised", False)}


@dataclass(frozen=True)
class FindingsRun:
    """What one regeneration reads and writes."""

    experiments: Path | None  # a folder of experiment directories (each STORAGE/NAME of study/run_experiment.py)
    models: tuple[Path, ...]  # the model the findings speak of; more than one: the same setting trained from other seeds
    out: Path
    data: str | None = None  # FER2013 file (None: $FER2013_PATH)
    faces: int = 500  # the first N hold-out faces for the finding analyses
    overwrite: bool = False
    device: str = "auto"
    command: str = PROGRAM  # the command line, as the document names it


def finished_experiments(root: Path | None) -> tuple[list[Experiment], list[str]]:
    """Every finished experiment directory directly under ``root``, by name, and one note per unfinished one."""
    if root is None:
        return [], ["no --experiments folder was given, so no seed question is answered here"]
    if not root.is_dir():
        raise MissingFile(f"--experiments {root} is not a folder; give the folder that holds the experiment directories (their --storage)")
    experiments, notes = [], []
    for path in sorted(p for p in root.iterdir() if (p / "experiment.yaml").is_file()):
        if (path / "scores.parquet").is_file():
            experiments.append(read_experiment(path))
        else:
            notes.append(f"{path.name}: not finished (no scores.parquet); continue it with study/run_experiment.py FILE --resume")
    if not experiments:
        notes.append(f"no finished experiment under {root}")
    return experiments, notes


def question_section(experiment: Experiment) -> Section:
    """One seed question: the design, the pairs in words, each level's means with intervals, and every pair's verdict."""
    levels, label = experiment.levels, experiment.label
    summary = level_summary(experiment.scores)
    differences = pairwise_differences(experiment.scores, levels)
    question = question_text(experiment)
    blocks: list = [Text(f"**{question}**"), Text(design_text(experiment), "note")]
    blocks += [Text(line) for line in pair_summary(differences, "psnr", label)]
    for metric in ("psnr", "ssim"):
        blocks.append(Table(interval_table(summary, levels, metric), f"{metric.upper()} per level: mean over seeds [95% t-interval]", markdown_rows=None))
    verdicts = verdict_table(differences, "psnr", label)
    blocks.append(Table(verdicts[["condition", "verdict"]], "PSNR differences a - b, paired over seeds and faces, with 95% intervals", markdown_rows=None))
    blocks += [Text(f"SSIM: {line}") for line in pair_summary(differences, "ssim", label)]
    failed = experiment.trials[experiment.trials["status"] != "completed"] if "status" in experiment.trials else experiment.trials.iloc[0:0]
    if len(failed):
        blocks.append(Text(f"{len(failed)} trial(s) did not complete ({', '.join(map(str, failed['trial_id']))}); their seeds drop out of their pairs.",
                           "warning"))
    return Section(f"Question: {experiment.config.get('name', experiment.path.name)}", blocks)


def filled_in_models(experiments: Sequence[Experiment], device) -> tuple[list[LevelModels], list[str]]:
    """The width, bottleneck and epochs experiments' models, smallest level first (the one expected to fill in most)."""
    chosen, notes = [], []
    for experiment in experiments:
        factor = experiment.config.get("factor")
        if factor not in FILLED_IN:
            continue
        models, missing = experiment_models(experiment.path, experiment.trials, device)
        notes += missing
        if len(models) < 2:
            notes.append(f"{experiment.path.name}: fewer than two levels have a model that loads, so it cannot test filled-in artefacts")
            continue
        ordered = sorted(models, key=lambda level: level_value(level, experiment.levels))
        reason, headline = FILLED_IN[factor]
        chosen.append(LevelModels(experiment.label, reason, {level: models[level] for level in ordered}, headline))
    found = {experiment.config.get("factor") for experiment in experiments}
    notes += [f"Filled-in artefacts: no finished experiment of {factor}, so '{reason}' is not tested (study/experiments/)"
              for factor, (reason, headline) in FILLED_IN.items() if headline and factor not in found]
    return chosen, notes


def level_value(level: str, levels: list[str]) -> float:
    """A level's number (width 8, 2 epochs), or its place in the experiment file when it has none."""
    try:
        return float(level)
    except ValueError:
        return float(levels.index(level)) if level in levels else math.inf


def load_denoisers(paths: Sequence[Path], device) -> dict[str, Denoiser]:
    """Each ``--model`` file as a denoiser, named by its file; a missing file is one line."""
    denoisers = {}
    for path in paths:
        if not path.is_file():
            raise MissingFile(f"--model {path} does not exist; give a trained model such as models/fer2013-blind.pt")
        model = load_model(path, device)[0]
        denoisers[str(path)] = memoised(model_denoiser(model, device))
    return denoisers


def seed_findings(denoisers: dict[str, Denoiser], holdout: Holdout, level_models: list[LevelModels]) -> list[Finding]:
    """The seed's findings on the first model, the others as its replicates (seeds); filled-in on the experiments' models."""
    (name, primary), *others = denoisers.items()
    replicates = [denoiser for _, denoiser in others]
    conditions = tuple(c for c in PREFERRED_CONDITIONS if c in holdout.conditions)
    findings = [analysis({name: primary}, holdout, conditions, replicates=replicates) for analysis in (region_errors, oversmoothing, contrast_split, ssim_vs_psnr)]
    findings.append(misalignment({name: primary}, holdout, replicates=replicates))
    if any(experiment.models for experiment in level_models):
        findings.append(filled_in_experiments(level_models, holdout))
    return findings


def finding_sections(findings: list[Finding], run: FindingsRun, holdout: Holdout, notes: list[str]) -> list[Section]:
    models = len(run.models)
    intro = (f"On the first {len(holdout.clean)} faces of the fixed hold-out (PrivateTest faces not in Training), with {run.models[0]}"
             + (f" and {models - 1} more model(s) of the same setting from other seeds" if models > 1 else "") + "; the filled-in test on the width "
             "and epochs experiments' models. " + METHOD)
    blocks: list = [Text(intro), Table(expected_findings(findings), "the expected findings: headline numbers with 95% intervals, and verdicts",
                                       markdown_rows=None)]
    if not any(f.key == "filled_in" for f in findings):
        blocks.append(Text("Filled-in artefacts: not tested, since no finished width, bottleneck or epochs experiment was found.", "warning"))
    blocks += [Text(note, "warning") for note in notes]
    sections = [Section("The seed's findings, each with a number", blocks)]
    for finding in findings:
        parts: list = [Text(finding.sentence), Table(evidence_table(finding.evidence, compact=True), "evidence", markdown_rows=None)]
        if finding.key == "filled_in":
            parts.append(Table(finding.table, "pull toward the mean face per level: mean over seeds and faces [95% interval]", markdown_rows=None))
        sections.append(Section(f"Finding: {finding.title.lower()} ({finding.verdict})", parts))
    return sections


def build_findings(run: FindingsRun) -> Path:
    """Write the findings document and return its path; refuses an existing one unless ``overwrite`` and marked as ours."""
    check_file_output(run.out, run.overwrite, KIND)
    if run.faces < 2:
        raise InputError(f"--faces must be at least 2 (an interval needs faces to resample), got {run.faces}")
    device = resolve_device(run.device)
    experiments, notes = finished_experiments(run.experiments)
    denoisers = load_denoisers(run.models, device)
    splits = load_splits(run.data)
    holdout = subset(holdout_for(splits.test_unique, default_cache_dir(), PREFERRED_CONDITIONS), run.faces)
    level_models, missing = filled_in_models(experiments, device)
    findings = seed_findings(denoisers, holdout, level_models)
    questions = [Section("The seed's questions", [Text("Each question is a controlled experiment: one factor at a few levels, everything else fixed, "
                                                       "each level trained from several seeds, every model scored on the same hold-out faces "
                                                       "(README, Controlled experiments). A verdict names a direction only where its 95% interval "
                                                       "excludes 0.")] + [Text(note, "warning") for note in notes])]
    questions += [question_section(experiment) for experiment in experiments]
    subtitle = (f"Regenerate this file with one command, from the repository root:\n\n    {run.command}\n\n"
                f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from {len(experiments)} experiment(s) and {len(run.models)} model(s) "
                "(FER2013 from --data, else $FER2013_PATH); do not edit it by hand.")
    text = render_markdown("What the experiments found", subtitle, questions + finding_sections(findings, run, holdout, missing))
    publish_file(run.out, text, run.overwrite, KIND)
    log.info("findings written to %s", run.out)
    return run.out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(prog=PROGRAM, description="Regenerate docs/findings.md from finished experiments and a trained model.")
    parser.add_argument("--experiments", type=Path, help="the folder holding the experiment directories (their --storage)")
    parser.add_argument("--model", type=Path, action="append", help="the trained model the findings speak of (default: models/fer2013-blind.pt); "
                                                                     "repeat it for the same setting trained from other seeds")
    parser.add_argument("--data", help="FER2013 file (default: $FER2013_PATH)")
    parser.add_argument("--out", type=Path, default=Path("docs/findings.md"), help="the document to write (default: docs/findings.md)")
    parser.add_argument("--faces", type=int, default=FindingsRun.faces, help=f"hold-out faces for the finding analyses (default: {FindingsRun.faces})")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--overwrite", action="store_true", help="replace a findings document this program wrote")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser.parse_args(argv)


def command_line(argv: Sequence[str]) -> str:
    """The command as the document names it: as it was given, with --overwrite, since rerunning it replaces the document."""
    shown = [arg for arg in argv if arg not in ("--overwrite", "--verbose")]
    return shlex.join([*PROGRAM.split(), *shown, "--overwrite"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    given = list(sys.argv[1:] if argv is None else argv)

    def run() -> None:
        from results.report import set_threads

        setup_logging(args.verbose)
        set_threads(args.threads)
        models = tuple(args.model or [Path("models/fer2013-blind.pt")])
        out = build_findings(FindingsRun(args.experiments, models, args.out, args.data, args.faces, args.overwrite, args.device, command_line(given)))
        print(f"findings: {out}")

    run_cli(run, PROGRAM)


if __name__ == "__main__":
    main()
