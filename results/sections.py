"""The report's sections: what each part of ``index.html`` and ``summary.md`` says, around which tables and figures.

Each builder writes its own figures into the report directory and returns a ``Section``; the numbers come in
already computed (leaderboard, curves, tuning), except the error analysis, which ``results.analysis`` computes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from denoise_core.evaluate import model_denoiser
from denoise_core.holdout import Holdout
from denoise_core.metrics import PSNR_CAP
from denoise_core.study_files import OBJECTIVE_MODES
from results import grids
from results.classical import SLOW, denoiser_at, fixed_denoiser
from results.curves import Denoiser
from results.html import Figure, Section, Table, Text, markdown_table
from results.importance import FANOVA_TRIALS, param_importance, plot_importance, plot_parallel_coordinates
from results.questions import answers, wide
from results.models import Learned, TrialModel
from results.pareto import pareto_front, plot_front
from results.search import (asha_rungs, best_trials, learning_curves, max_epochs, optimization_history, plot_history, plot_learning_curves,
                            plot_timeline, read_histories, timeline)
from results.study_dir import Study, ranked_trials

log = logging.getLogger(__name__)
ANALYSED_MODELS = 2  # top models handed to the error analysis (with the best baseline); it also sees every trial
SUMMARY_CONDITIONS = ("none", "sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9", "gauss:15", "gauss:25", "gauss:50", "sp:0.2+gauss:20")


def pivot(curves: pd.DataFrame, metric: str, conditions: tuple[str, ...]) -> pd.DataFrame:
    """Models as rows, conditions as columns, learned models first, plus the noisy input."""
    shown = [c for c in conditions if c in set(curves["condition"])]
    table = curves.pivot_table(index="model", columns="condition", values=metric, sort=False).reindex(columns=shown)
    noisy = curves.drop_duplicates("condition").set_index("condition")[f"noisy_{metric}"].reindex(shown)
    table.loc["noisy input"] = noisy
    table = table.reset_index().rename(columns={"model": f"{metric.upper()} by condition"})
    faces = curves.groupby("model")["faces"].min()
    table.insert(1, "faces", table.iloc[:, 0].map(faces).astype("Int64"))
    return table


def headline(learned: list[Learned], curves: pd.DataFrame, best: str) -> str:
    at = curves[curves["condition"] == "sp:0.5"].set_index("model")
    if not learned or at.empty:
        return f"best baseline: {best}"
    top = learned[0].name
    return (f"at S&P 0.5 on the first {int(at.at[top, 'faces'])} hold-out faces, {top} scores {at.at[top, 'psnr']:.2f} dB / SSIM "
            f"{at.at[top, 'ssim']:.3f} against {best} "
            f"{at.at[best, 'psnr']:.2f} dB / {at.at[best, 'ssim']:.3f} (noisy input {at.at[top, 'noisy_psnr']:.2f} dB)")


def leaderboard_section(study: Study, board: pd.DataFrame, scored: tuple[str, ...], faces: int | None, notes: list[str], work: Path) -> Section:
    """The trial table, ranked by the validation metric, with the test scores beside it."""
    (work / "leaderboard.md").write_text(markdown_table(board) + "\n")
    faces = "all" if faces is None else f"the first {faces}"
    blocks = [
        Text(f"Every trial, ranked by its validation {study.metric} ({study.mode}imised by the search). The test columns are scored "
             f"here, never used to rank: the mean over {', '.join(scored)} on {faces} test faces (PrivateTest, duplicates of Training removed), "
             f"with the trial's best weights. Also in leaderboard.csv and leaderboard.md."),
        Table(board, "leaderboard", markdown_rows=15),
    ]
    blocks += [Text(note, "warning") for note in notes]
    return Section("Leaderboard", blocks)


def search_section(study: Study, work: Path) -> Section:
    """How the search ran, from trials.csv and each trial's result.json: history, learning curves, timeline, importance."""
    histories = read_histories(study)
    blocks = [Text("How the search ran, from trials.csv (one row per trial: status, hyperparameters, best validation scores) and each "
                   "trial's result.json (one line per epoch, as Ray Tune received it: the validation metrics, when it was reported, which "
                   "node trained it)."),
              *(Text(note, "note") for note in histories.notes)]
    blocks += history_blocks(study, histories.epochs, work) + curve_blocks(study, histories.epochs, work)
    blocks += timeline_blocks(study, histories.epochs, work) + importance_blocks(study, work)
    return Section("The search", blocks)


def history_blocks(study: Study, epochs: pd.DataFrame, work: Path) -> list:
    history = optimization_history(study, epochs)
    if history.empty:
        return [Text("No optimization history: no trial has a readable result.json to say when it finished.", "note")]
    history.to_csv(work / "optimization_history.csv", index=False)
    plot_history(history, study.metric, study.mode, work / "optimization_history.png")
    return [Text(f"Optimization history: each trial's {study.metric} from trials.csv (its best epoch), in the order the trials finished "
                 "(the timestamp of the last line of its result.json). The black step line is the best so far among completed and "
                 "ASHA-stopped trials, the ones model selection may pick. Filled dots trained every epoch, hollow dots were stopped by ASHA, "
                 "crosses failed (at the bottom edge when they never scored). A line still climbing at the right edge says more trials "
                 "would likely have found better settings. Numbers in optimization_history.csv."),
            Figure("optimization_history.png", f"optimization history: {study.metric} per trial in finishing order, and the best so far")]


def curve_blocks(study: Study, epochs: pd.DataFrame, work: Path) -> list:
    curves = learning_curves(study, epochs)
    if curves.empty:
        return [Text(f"No learning curves: no result.json holds an epoch with {study.epoch_metric}.", "note")]
    rungs, named = asha_rungs(study.config), best_trials(study)
    curves.to_csv(work / "learning_curves.csv", index=False)
    plot_learning_curves(curves, rungs, study.epoch_metric, named, work / "learning_curves.png")
    if study.config.get("scheduler") != "asha":
        scheduler = (f"The study ran without ASHA (scheduler: {study.config.get('scheduler', 'fifo')}), so no trial was cut: each trained "
                     "until its last epoch, its early stopping or a failure.")
    else:
        factor = study.config.get("reduction_factor")
        at = ", ".join(map(str, rungs[:-1])) + " and " * (len(rungs) > 1) + str(rungs[-1]) if rungs else "none"
        scheduler = (f"Dotted vertical lines are ASHA's rungs, epochs {at} (grace_period {study.config.get('grace_period')} x "
                     f"reduction_factor {factor} to the power k, below the {max_epochs(study.config)} epochs a trial can train): at each "
                     f"rung ASHA lets a trial go on only if its {study.epoch_metric} is in the best 1/{factor} of the trials that reached "
                     "that rung before it" + (", and stops a trial it let on at its next epoch once the trials that reached the rung "
                                              "since push it out of that best 1/" + str(factor) if study.config.get("revoke_promotions") else "")
                     + ". A black cross marks the last epoch of each trial ASHA stopped; a curve still rising where it "
                     "was cut may have been stopped too early.")
    return [Text(f"Learning curves: {study.epoch_metric} after every epoch of every trial, from each trial's result.json, coloured by "
                 f"status; the {len(named)} best trials are named at their last epoch. {scheduler} Numbers in learning_curves.csv "
                 "(cut: ASHA stopped the trial after this epoch)."),
            Figure("learning_curves.png", f"learning curves: {study.epoch_metric} per epoch, ASHA's cuts and rungs")]


def timeline_blocks(study: Study, epochs: pd.DataFrame, work: Path) -> list:
    bars = timeline(study, epochs)
    if bars.empty:
        return [Text("No timeline: no result.json holds a timestamp.", "note")]
    bars.to_csv(work / "timeline.csv", index=False)
    plot_timeline(bars, work / "timeline.png")
    return [Text("Timeline: one row per node (the node that trained the trial: train_node_ip in result.json), one bar per trial from "
                 "the start of its first epoch (the first line's timestamp less that epoch's time_this_iter_s) to its last result, "
                 "coloured by status and labelled with its trial id (or its first four characters where the bar is short). Bars stacked in "
                 "one row ran at the same time on that node; a trial resumed from a checkpoint has one bar per stretch, and gaps between "
                 "bars are time no trial was training there. Numbers (unix seconds) in timeline.csv."),
            Figure("timeline.png", "timeline: trials per node over the study's wall-clock time, coloured by status")]


def importance_blocks(study: Study, work: Path) -> list:
    importance = param_importance(study)
    blocks = [Text("Hyperparameter importance: the completed trials of the study's Optuna database (optuna.db; a study without one has "
                   f"its trials.csv replayed into an in-memory Optuna study with the search space of study.yaml), ASHA-stopped trials "
                   f"left out, as Optuna leaves pruned trials out; the note below says which; each column names its "
                   f"evaluator. PED-ANOVA (Optuna's default) compares where the best trials' settings fall with the whole search space; "
                   f"from {FANOVA_TRIALS} completed trials fANOVA (the variance a random forest fitted to the trials attributes to each "
                   "setting) stands beside it. Where the two disagree, neither is a measurement.")]
    if importance.table is not None:
        importance.table.to_csv(work / "importance.csv", index=False)
        plot_importance(importance, work / "importance.png")
        blocks += [Text(importance.reason, "note"), Table(importance.table, "hyperparameter importance (each column sums to 1; importance.csv)"),
                   Figure("importance.png", f"hyperparameter importance for {study.metric}, by {' and '.join(importance.evaluators)}")]
    else:
        blocks.append(Text(f"No hyperparameter importance: {importance.reason}.", "note"))
    reason = plot_parallel_coordinates(study, work / "parallel_coordinates.png")
    if reason is None:
        blocks.append(Figure("parallel_coordinates.png", "parallel coordinates of the completed trials: each line is a trial, colour is the validation metric"))
    else:
        blocks.append(Text(f"No parallel-coordinates plot: {reason}.", "note"))
    return blocks


def front_table(study: Study) -> pd.DataFrame:
    """The usable trials on the Pareto front of the validation metric against parameter count, fewest parameters first:
    trial id, status, the searched settings, the metric and the parameter count."""
    usable = ranked_trials(study)
    if "parameters" not in usable:
        return pd.DataFrame(columns=["trial_id", "status", study.metric, "parameters"])
    on_front = usable[pareto_front(usable, {study.metric: study.mode, "parameters": OBJECTIVE_MODES["parameters"]})]
    table = on_front[["trial_id", "status"]].copy()
    for column in study.param_columns:
        table[column[len("param_"):]] = on_front[column]
    table[study.metric] = on_front[study.metric]
    table["parameters"] = on_front["parameters"].astype("Int64")
    return table.sort_values(["parameters", study.metric], ascending=[True, study.mode == "min"], kind="stable").reset_index(drop=True)


def tradeoffs_section(study: Study, work: Path) -> Section:
    """The Pareto front of the validation metric against parameter count: compression against fidelity."""
    optimised = "parameters" in (study.config.get("objectives") or [])
    how = (f"This study optimised both: {study.epoch_metric} and parameter count were its objectives (objectives: [parameters]), "
           "so Optuna's multi-objective TPE drew settings towards this front; the exported best model is still the best by "
           f"{study.epoch_metric}." if optimised else
           f"This study optimised {study.epoch_metric} alone (no objectives); the front is read off its trials after the fact.")
    front = front_table(study)
    blocks = [Text(f"Compression against fidelity: each usable trial's {study.metric} (validation, from trials.csv) against its "
                   "parameter count. A trial is on the Pareto front when no other trial has at least its score with at most its "
                   "parameters and is better in one; those trials are drawn in red, joined by a step line, and named. "
                   f"{how} Completed and ASHA-stopped trials count, as in model selection; optuna-dashboard's own front of a "
                   "multi-objective study holds its completed trials only. The front is in pareto_front.csv.")]
    if front.empty:
        return Section("Trade-offs", blocks + [Text("No front: no usable trial has both a validation score and a parameter count.", "note")])
    front.to_csv(work / "pareto_front.csv", index=False)
    usable = ranked_trials(study)
    usable = usable[pd.to_numeric(usable["parameters"], errors="coerce").notna()]
    plot_front(usable, usable["trial_id"].isin(front["trial_id"]), "parameters", study.metric, work / "pareto_front.png",
               f"{study.name}: {study.metric} against parameter count, the Pareto front in red")
    return Section("Trade-offs", blocks + [Figure("pareto_front.png", f"{study.metric} against parameter count; red: the Pareto front"),
                                           Table(front, f"the Pareto front's {len(front)} trials, fewest parameters first")])


def questions_section(study: Study, test_rows: pd.DataFrame, scored: tuple[str, ...], faces: int | None, work: Path) -> Section:
    """The seed's questions (bottleneck size, dropout, loss, training noise): each value's mean test score per density."""
    found = answers(study, test_rows, work)
    faces_text = "all" if faces is None else f"the first {faces}"
    blocks = [Text(f"How each searched hyperparameter changes test PSNR and SSIM at each salt-and-pepper density ({', '.join(scored)}; "
                   f"{faces_text} test faces), from this study's own trials with checkpoints. n is the number of trials behind each line; "
                   "ASHA stops weak settings early, so 'mean epochs' says how long each group trained. Continuous settings are grouped "
                   "into three ranges of equal trial counts. Numbers in question_*.csv.")]
    if not found:
        blocks.append(Text("This study searched none of bottleneck size, dropout, loss and training noise with two or more values "
                           "among its scored trials, so it answers none of these questions.", "note"))
    for setting, label, table, figure in found:
        blocks += [Figure(figure.name, f"{label} ({setting}): mean test PSNR and SSIM per density"),
                   Table(wide(table, "psnr"), f"{label}: mean test PSNR (dB) per density", markdown_rows=10),
                   Table(wide(table, "ssim"), f"{label}: mean test SSIM per density", markdown_rows=10)]
    return Section("What the hyperparameters do", blocks)


def harm_warnings(curves: pd.DataFrame, models: list[str]) -> list[str]:
    """One line per model that returns faces worse than it got them (mean PSNR below the noisy input's) at some condition.

    The clean point (``none``) is left out: its PSNR is capped, and any change to a clean face lowers it.
    """
    lines = []
    for model in models:
        rows = curves[(curves["model"] == model) & (curves["condition"] != "none") & (curves["psnr"] < curves["noisy_psnr"])]
        if len(rows):
            worst = rows.loc[(rows["noisy_psnr"] - rows["psnr"]).idxmax()]
            lines.append(f"{model} makes faces worse than its input at {', '.join(rows['condition'])}: at {worst['condition']} it scores "
                         f"{worst['psnr']:.2f} dB out of a {worst['noisy_psnr']:.2f} dB input. Do not use it for that noise.")
    return lines


def robustness_section(curves: pd.DataFrame, best: str, references: pd.DataFrame, filters: pd.DataFrame, holdout: Holdout, models: list[str],
                       tensorboard: str) -> Section:
    """The curves figure, PSNR and SSIM tables at selected conditions, the reference filter per condition (chosen on
    validation), where each filter ran and on how many faces (``filters``: ``BaselineRun.work``), and where a model harms."""
    total = int(curves["faces"].max())
    slow = ", ".join(f"{name} on the first {int(curves.loc[curves['model'] == name, 'faces'].min())} faces" for name in SLOW if name in set(curves["model"]))
    bm3d_at = ", ".join(curves.loc[curves["model"] == "bm3d", "condition"])
    tuned = filters[filters["tuned_on"] > 0]
    tuned_on = ", ".join(f"{row.baseline} on {row.tuned_on}" for row in tuned.itertuples())
    validated_on = int(references["val_faces"].min()) if len(references) else 0
    blocks = [
        Text(f"PSNR and SSIM of the top models (bold) and every classical baseline on the fixed noisy hold-out: {total} of its "
             f"{len(holdout.clean)} test faces, salt-and-pepper density 0 (the clean face) to 0.9, Gaussian sigma, and the mixtures. "
             f"Filters with a parameter were tuned per condition on validation faces with other noise draws ({tuned_on or 'none'}; "
             f"baseline_tuning.csv). Slow baselines ran on a subset, drawn dashed: {slow or 'none'}"
             + (f"; BM3D only at {bm3d_at}." if bm3d_at else ".") + f" Per-image PSNR is capped at {PSNR_CAP:g} dB (an unchanged face's is infinite), which only touches the clean point."),
        Figure("robustness.png", "robustness curves: PSNR (top) and SSIM (bottom); the dotted black line is the noisy input"),
        Table(pivot(curves, "psnr", SUMMARY_CONDITIONS), "PSNR (dB) at selected conditions (all conditions in curves.csv)"),
        Table(pivot(curves, "ssim", SUMMARY_CONDITIONS), "SSIM at selected conditions"),
        Table(pivot(curves, "ssim_gauss", SUMMARY_CONDITIONS), "Gaussian-window SSIM (11x11, sigma 1.5: the window of Wang et al. 2004 "
              "and BasicSR, for comparing with published tables; the SSIM above is scikit-image's 7x7 uniform window) at selected conditions"),
        *(Text(line, "warning") for line in harm_warnings(curves, models)),
        Table(filters, "classical filters: the conditions each ran at, its test, tuning and validation faces, and the CPU seconds its work "
              "took in this report (0: from the cache of an earlier one; baselines.csv)", markdown_rows=20),
        Text("The reference classical filter of each condition is chosen on validation, never on the test faces it is then scored "
             f"on: the filter with the highest mean PSNR on the same {validated_on} validation faces (PublicTest, copies of Training faces "
             "removed) corrupted with that condition's validation noise, every filter at its tuned setting; its test scores stand "
             "beside it (reference_baselines.csv)."),
        Table(references.round(4), "reference filter per condition: chosen by validation PSNR, then scored on the test faces", markdown_rows=40),
        Text(f"Best baseline (highest mean validation PSNR over the S&P conditions, chosen on validation): {best}. The same curves in TensorBoard, "
             f"one run (one colour) per model, kept out of the study so that its own TensorBoard shows only the trials: {tensorboard} "
             "(steps are density x 100 or sigma).", "note"),
    ]
    return Section("Robustness curves", blocks)


def grid_denoisers(learned: list[Learned], best: str, tuning: pd.DataFrame, condition: str) -> dict[str, Denoiser]:
    chosen = {m.name: m.denoise for m in learned}
    chosen[f"{best} (best baseline)"] = denoiser_at(best, tuning, condition)
    return chosen


def grids_section(learned: list[Learned], best: str, tuning: pd.DataFrame, holdout: Holdout, work: Path) -> Section:
    """Noisy | models | best baseline | clean grids at several densities, and enlarged eye and mouth crops."""
    blocks = [Text(f"Fixed test faces (hold-out indices {', '.join(map(str, grids.fixed_faces(len(holdout.clean))))}): noisy | each top model | "
                   f"best baseline ({best}, tuned for each density) | clean.")]
    for condition in (c for c in grids.GRID_CONDITIONS if c in holdout.conditions):
        name = f"grid_{condition.replace(':', '')}.png"
        columns = grids.restore(holdout, condition, grids.fixed_faces(len(holdout.clean)), grid_denoisers(learned, best, tuning, condition))
        grids.plot_grid(columns, work / name, f"salt-and-pepper density {condition[3:]}")
        blocks.append(Figure(name, f"faces at {condition}"))
    for condition in (c for c in grids.CROP_CONDITIONS if c in holdout.conditions):
        name = f"crops_{condition.replace(':', '')}.png"
        indices = grids.fixed_faces(len(holdout.clean))[:grids.CROP_FACES]
        columns = grids.restore(holdout, condition, indices, grid_denoisers(learned, best, tuning, condition))
        grids.plot_crops(columns, work / name, f"eyes and mouth enlarged at {condition} (faces 1-2 of the grids)")
        blocks.append(Figure(name, f"eyes and mouth at {condition}, enlarged (nearest-neighbour pixels)"))
    return Section("Image grids", blocks)


def analysis_section(learned: list[Learned], best: str, tuning: pd.DataFrame, trial_models: list[TrialModel], holdout: Holdout,
                     faces: int, work: Path) -> Section:
    """The colleague-owned error analysis: its findings, whether each supports the seed's expectation, tables and figures."""
    denoise, setting = fixed_denoiser(best, tuning)
    denoisers = {m.name: m.denoise for m in learned[:ANALYSED_MODELS]}
    denoisers[best] = denoise
    device_models = [(m.row, model_denoiser(m.model, next(m.model.parameters()).device)) for m in trial_models]
    intro = Text(f"On the first {faces} test faces; denoisers: {', '.join(denoisers)}"
                 + (f" ({best} with {setting})" if setting else "") + f"; filled-in artefacts over {len(device_models)} trials with checkpoints "
                 "(a search's trials differ in more than one setting: python -m results.findings tests it on the width and epochs experiments).")
    try:
        from results.analysis import METHOD, error_analysis, evidence_table, expected_findings

        findings = error_analysis(denoisers, holdout, work / "analysis", trial_models=device_models or None, faces=faces)
    except Exception as error:  # noqa: BLE001 - a failed analysis must not cost the rest of the report
        log.exception("error analysis failed")
        return Section("Error analysis", [intro, Text(f"The error analysis failed: {type(error).__name__}: {error}", "warning")])
    blocks = [intro, Table(expected_findings(findings), "does this study support the expected findings? (95% intervals over faces)"), Text(METHOD, "note")]
    for finding in findings:
        blocks.append(Text(f"{finding.title}. {finding.sentence}" + (f" Expected: {finding.expectation} - {finding.verdict}." if finding.expectation else "")))
        if finding.figure:
            blocks.append(Figure(f"analysis/{finding.figure}", finding.title))
        if finding.evidence:
            evidence = evidence_table(finding.evidence)
            evidence.to_csv(work / "analysis" / f"{finding.key}_evidence.csv", index=False)
            blocks.append(Table(evidence, f"{finding.title}: evidence with 95% intervals (analysis/{finding.key}_evidence.csv)", markdown_rows=8, html_rows=40))
        blocks.append(Table(finding.table, f"{finding.title}: numbers (analysis/{finding.key}.csv)", markdown_rows=8, html_rows=40))
        finding.table.to_csv(work / "analysis" / f"{finding.key}.csv", index=False)
    return Section("Error analysis", blocks)



