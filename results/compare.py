"""``python -m results.compare DIR_A DIR_B ... --out OUT_DIR``: the best models of several studies on the same
robustness curves and in one table, beside the classical baselines.

    python -m results.compare studies/local studies/full --out comparisons/local-vs-full

Every model is scored on the same fixed noisy hold-out at the same conditions (the full default grid plus any
condition a study added), so the curves are directly comparable. The hold-out comes from ``--data``, else
``$FER2013_PATH``, else the first study's data path; an existing OUT_DIR is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.errors import InputError
from denoise_core.evaluate import model_denoiser
from denoise_core.inference import resolve_device
from denoise_core.settings import Flag
from results.classical import baseline_curves
from results.curves import COLUMNS, curve_conditions, model_curves, plot_curves, sp_conditions, tensorboard_hint
from results.html import Figure, Section, Table, Text, render_html, render_markdown
from results.models import Learned, load_trial_models
from results.output import check_output, publish, scratch_dir
from results.options import ReportOptions
from results.report import (OPTIONS_EPILOG, Stopwatch, add_option_arguments, baseline_plan, curve_holdout, load_data, options_from, reading_warnings,
                            score_cache, set_threads)
from results.sections import SUMMARY_CONDITIONS, pivot
from results.study_dir import Study, read_study, study_data_path, top_trials

log = logging.getLogger("results.compare")


def unique_names(studies: list[Study]) -> list[str]:
    """Study names for labels; a repeated name gets its directory's parent appended so labels stay distinct."""
    names = [s.name for s in studies]
    return [f"{n} ({s.path.resolve().parent.name})" if names.count(n) > 1 else n for n, s in zip(names, studies)]


def best_models(studies: list[Study], labels: list[str], top: int, device) -> tuple[list[tuple[str, Study, Learned]], list[str]]:
    """(study label, study, model) for the ``top`` best trials (by each study's validation metric) of every study,
    and notes on studies without one."""
    learned, notes = [], []
    for study, label in zip(studies, labels):
        wanted = list(top_trials(study, top)["trial_id"])
        if not wanted:
            notes.append(f"{label}: no finished trial with a checkpoint; left out")
            continue
        loaded = {m.trial_id: m for m in load_trial_models(study, device)[0] if m.trial_id in wanted}
        for rank, trial_id in enumerate(wanted, start=1):
            if trial_id in loaded:
                model = Learned(f"{label} AE#{rank} {trial_id}", loaded[trial_id], model_denoiser(loaded[trial_id].model, device))
                learned.append((label, study, model))
    return learned, notes


def comparison_table(learned: list[tuple[str, Study, Learned]], curves: pd.DataFrame) -> pd.DataFrame:
    """One row per compared model: its study, trial, hyperparameters, validation metric and test scores."""
    rows = []
    scored = sp_conditions(tuple(dict.fromkeys(curves["condition"])))
    for label, study, model in learned:
        own = curves[(curves["model"] == model.name) & curves["condition"].isin(scored)]
        at_half = curves[(curves["model"] == model.name) & (curves["condition"] == "sp:0.5")]
        params = {k[len("param_"):]: v for k, v in model.trial.row.items() if k.startswith("param_")}
        rows.append({"model": model.name, "study": label, "trial_id": model.trial.trial_id,
                     "validation metric": study.metric, "validation value": model.trial.row.get(study.metric),
                     "test_psnr": own["psnr"].mean(), "test_ssim": own["ssim"].mean(),
                     "psnr_sp0.5": at_half["psnr"].mean() if len(at_half) else float("nan"),
                     "parameters": model.trial.parameters, "hyperparameters": ", ".join(f"{k}={v}" for k, v in params.items())})
    return pd.DataFrame(rows)


def build_comparison(study_dirs: list[Path], out: Path, data: str | None = None, options: ReportOptions = ReportOptions(), baselines: bool = True) -> Path:
    """Write the comparison into ``out`` and return it (refuses an existing ``out`` unless ``options.overwrite``)."""
    if len(study_dirs) < 1:
        raise InputError("give at least one study directory to compare")
    if len(study_dirs) == 1 and options.top == 1:
        raise InputError(f"one study with --top 1 has one model, nothing to compare it with: give two or more studies, --top N for "
                         f"the study's N best trials, or run python -m results.report {study_dirs[0]}")
    check_output(out, options.overwrite, "comparison", tuple(study_dirs))
    studies = [read_study(d) for d in study_dirs]
    labels = unique_names(studies)
    clock = Stopwatch()
    splits = load_data(studies[0], data)
    sources = {str(study_data_path(s, data).resolve()) for s in studies if data or s.config.get("data")}
    conditions = curve_conditions(tuple(c for s in studies for c in s.conditions))
    holdout = curve_holdout(splits, conditions)
    device = resolve_device(options.device)
    learned, notes = best_models(studies, labels, options.top, device)
    notes = reading_warnings(studies, options.faces, holdout) + notes
    clock.lap("models")
    model_rows = model_curves({m.name: m.denoise for _, _, m in learned}, holdout, conditions, options.faces)
    baseline_rows = baseline_curves(holdout, splits.val_unique, conditions, baseline_plan(options), score_cache(options))[0] if baselines else pd.DataFrame(columns=list(COLUMNS))
    curves = pd.concat([f for f in (model_rows, baseline_rows) if len(f)], ignore_index=True)
    clock.lap("curves")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = scratch_dir(out, "comparison")
    try:
        table = comparison_table(learned, curves)
        table.to_csv(work / "compare.csv", index=False)
        curves.to_csv(work / "curves.csv", index=False)
        plot_curves(curves, work / "robustness.png", f"{', '.join(labels)}: best models on the fixed noisy hold-out")
        clock.lap("plots")
        blocks = [
            Text(f"The {options.top} best trial(s) of each study by its own validation metric, scored on {int(model_rows['faces'].max()) if len(model_rows) else 0} "
                 f"test faces of the fixed noisy hold-out (PrivateTest, duplicates of Training removed). test_psnr / test_ssim average the "
                 f"S&P conditions {', '.join(sp_conditions(conditions))}."),
            Table(table, "compared models"),
            Figure("robustness.png", "robustness curves: PSNR (top) and SSIM (bottom); the dotted black line is the noisy input"),
            Table(pivot(curves, "psnr", SUMMARY_CONDITIONS), "PSNR (dB) at selected conditions (all in curves.csv)"),
            Table(pivot(curves, "ssim", SUMMARY_CONDITIONS), "SSIM at selected conditions"),
        ]
        if len(sources) > 1:
            blocks.insert(0, Text(f"The studies name different data files ({', '.join(sorted(sources))}); all models were scored on {study_data_path(studies[0], data)}.", "warning"))
        blocks += [Text(note, "warning") for note in notes]
        sections = [Section("Best models of each study", blocks), Section("Timings", [Table(clock.table(), "seconds per step")])]
        subtitle = f"{len(studies)} studies: {', '.join(str(s.path) for s in studies)} - generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC"
        (work / "index.html").write_text(render_html("Study comparison", subtitle, sections, work))
        (work / "summary.md").write_text(render_markdown("Study comparison", subtitle, sections))
        publish(work, out, options.overwrite, "comparison")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("comparison written to %s", out)
    return out


COMPARED = ReportOptions(top=1)  # each study's best trial, unless --top N


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[Flag]]:
    parser = ArgumentParser(prog="python -m results.compare", description="Put the best models of several studies on the same curves and table.",
                            epilog=OPTIONS_EPILOG + " --top is the best trials per study; the report's other options apply to every model.")
    parser.add_argument("study_dirs", nargs="+", type=Path, help="finished study directories (two or more, or one with --top N)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (refused if it exists, unless --overwrite)")
    parser.add_argument("--no-baselines", action="store_true", help="leave the classical baselines off the curves")
    flags = add_option_arguments(parser, COMPARED)
    return parser.parse_args(argv), flags


def main(argv: list[str] | None = None) -> None:
    args, flags = parse_args(argv)

    def run() -> None:
        setup_logging(args.verbose)
        set_threads(args.threads)
        out = build_comparison(args.study_dirs, args.out, args.data, options_from(args, flags, COMPARED), baselines=not args.no_baselines)
        print(f"comparison: {out / 'index.html'}\nsummary: {out / 'summary.md'}\ncurves in TensorBoard: {tensorboard_hint(out, out.name)}")

    run_cli(run, "results.compare")


if __name__ == "__main__":
    main()
