"""The study report and the study comparison (results/), on a tiny study directory built here without Ray:
three trials trained with ``fit`` on a slice of the real data, one errored trial, a trials.csv and a study.yaml."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from denoise_core.baselines import BASELINES
from denoise_core.checkpoint import load_model, save_checkpoint
from denoise_core.data import load_splits, read_csv_head
from denoise_core.holdout import DEFAULT_CONDITIONS, make_holdout
from denoise_core.metrics import PSNR_CAP
from denoise_core.model import ModelConfig, count_parameters
from denoise_core.fit import TrainConfig, fit
from results.compare import build_comparison
from results.curves import main as curves_main, noise_axis, tag_name
from results.importance import param_importance
from results.report import ReportOptions, build_report, main
from results.study_dir import Study, checkpoint_file, read_study, study_data_path

OPTIONS = ReportOptions(top=2, faces=24, bm3d_faces=1, tune_faces=6, bm3d_conditions=("gauss:25",), device="cpu")
TRIALS = (  # trial id, bottleneck size, lr, loss, epochs, status
    ("aaaa0001", 8, 0.006, "mse", 2, "completed"),
    ("aaaa0002", 4, 0.004, "mae", 2, "completed"),
    ("aaaa0003", 8, 0.003, "mse", 1, "stopped by ASHA"),
)
SEARCH = {"model.bottleneck_size": {"choice": [4, 8]}, "lr": {"loguniform": [0.003, 0.01]}, "loss": {"choice": ["mse", "mae"]}}


def write_study(root: Path, name: str, data: Path) -> Path:
    """A study directory as study/study.py writes it: trial_<id>/checkpoint_*/checkpoint.pt, trials.csv, study.yaml."""
    study = root / name
    splits = load_splits(data)
    rows = []
    for trial_id, bottleneck, lr, loss, epochs, status in TRIALS:
        config = TrainConfig(model=ModelConfig(base_width=4, stages=2, bottleneck_size=bottleneck), noise="sp:0.1-0.5", loss=loss,
                             epochs=epochs, batch_size=32, lr=lr, train_size=128, val_size=32, seed=len(rows), device="cpu")
        result = fit(config, splits)
        checkpoint = study / f"trial_{trial_id}" / f"checkpoint_{epochs - 1:06d}"
        save_checkpoint(result.checkpoint, checkpoint / "checkpoint.pt")
        best = result.best
        rows.append({"trial_id": trial_id, "status": status, "param_model.bottleneck_size": bottleneck, "param_lr": lr, "param_loss": loss,
                     "best_epoch": result.best_epoch, "epochs_run": epochs, "best_val_loss": best["val_loss"], "best_val_psnr": best["val_psnr"],
                     "best_val_ssim": best["val_ssim"], "noisy_val_psnr": best["noisy_psnr"], "parameters": result.parameters,
                     "time_s": result.seconds, "node_ip": "127.0.0.1", "path": str(study / f"trial_{trial_id}"), "checkpoint": str(checkpoint)})
    rows.append({"trial_id": "aaaa0004", "status": "error: RuntimeError: worker died", "param_model.bottleneck_size": 4, "param_lr": 0.005,
                 "param_loss": "mse", "path": str(study / "trial_aaaa0004")})
    pd.DataFrame(rows).to_csv(study / "trials.csv", index=False)
    config = {"name": name, "storage": str(root), "data": str(data), "metric": "val_loss", "mode": "min", "holdout_faces": 40,
              "holdout_conditions": ["sp:0.1", "sp:0.5", "gauss:25", "sp:0.1+gauss:10"], "search": SEARCH}
    (study / "study.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return study


@pytest.fixture(scope="module")
def env(tmp_path_factory, fer2013_path):
    """A data slice, a private cache (hold-outs and cached baseline scores), and the tiny study."""
    root = tmp_path_factory.mktemp("report")
    data = root / "fer2013-slice.csv"
    data.write_bytes(read_csv_head(fer2013_path, 300))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACESTUDY_CACHE", str(root / "cache"))
        patch.delenv("FER2013_PATH", raising=False)
        yield {"root": root, "data": data, "study": write_study(root, "tiny", data)}


@pytest.fixture(scope="module")
def report(env) -> Path:
    return build_report(env["study"], None, OPTIONS)


def curves_of(report: Path) -> pd.DataFrame:
    return pd.read_csv(report / "curves.csv")


def ranked_ids(study: Path) -> list[str]:
    """Usable trials by validation loss, best first: what the report must call AE#1, AE#2 ..."""
    trials = pd.read_csv(study / "trials.csv", dtype={"trial_id": str})
    return list(trials[trials["status"].isin(["completed", "stopped by ASHA"])].sort_values("best_val_loss")["trial_id"])


# ------------------------------------------------------------------------------------------------ leaderboard


def test_leaderboard_lists_every_trial_with_validation_and_test_scores(env, report):
    board = pd.read_csv(report / "leaderboard.csv", dtype={"trial_id": str})
    trials = pd.read_csv(env["study"] / "trials.csv", dtype={"trial_id": str})
    assert sorted(board["trial_id"]) == sorted(trials["trial_id"])
    for column in ("rank", "status", "model.bottleneck_size", "lr", "loss", "best_epoch", "epochs_run", "val_loss", "val_psnr", "val_ssim",
                   "test_psnr", "test_ssim", "parameters", "time_s"):
        assert column in board.columns, column
    scored = board[board["status"] != "error: RuntimeError: worker died"]
    assert list(scored["val_loss"]) == sorted(scored["val_loss"])  # ranked by the study's validation metric
    assert list(scored["rank"]) == [1, 2, 3]
    assert scored[["test_psnr", "test_ssim"]].map(math.isfinite).all().all()
    assert (scored["test_psnr"] > 5).all() and (scored["test_ssim"] > 0).all()
    failed = board[board["trial_id"] == "aaaa0004"].iloc[0]
    assert math.isnan(failed["test_psnr"]) and math.isnan(failed["rank"]) and board.index[board["trial_id"] == "aaaa0004"][0] == len(board) - 1
    model, _ = load_model(env["study"] / "trial_aaaa0002" / "checkpoint_000001" / "checkpoint.pt")
    assert int(board.set_index("trial_id").at["aaaa0002", "parameters"]) == count_parameters(model)
    assert (report / "leaderboard.md").read_text().startswith("| rank | trial_id | status |")


def test_leaderboard_test_score_is_the_mean_over_the_studys_sp_conditions(env, report):
    board = pd.read_csv(report / "leaderboard.csv", dtype={"trial_id": str}).set_index("trial_id")
    curves = curves_of(report)
    winner = ranked_ids(env["study"])[0]
    best = curves[curves["model"] == f"AE#1 {winner}"].set_index("condition")
    assert board.at[winner, "test_psnr"] == pytest.approx(best.loc[["sp:0.1", "sp:0.5"], "psnr"].mean())


def test_importance_and_parallel_coordinates_are_drawn(report):
    html = (report / "index.html").read_text()
    assert (report / "importance.png").is_file() and (report / "parallel_coordinates.png").is_file()
    assert "PED-ANOVA importance" in html and "over 2 completed trials" in html


def test_importance_needs_two_completed_trials(env):
    study = read_study(env["study"])
    one = Study(study.path, study.config, study.trials[study.trials["trial_id"] != "aaaa0002"])
    importance = param_importance(one)
    assert importance.table is None and "at least 2 completed trials" in importance.reason and importance.trials == 1


def test_the_seeds_questions_are_answered_from_every_scored_trial(env, report):
    board = pd.read_csv(report / "leaderboard.csv", dtype={"trial_id": str}).set_index("trial_id")
    for setting in ("bottleneck_size", "loss"):
        table = pd.read_csv(report / f"question_{setting}.csv", dtype={"value": str})
        assert (report / f"question_{setting}.png").is_file()
        assert set(table["condition"]) == {"sp:0.1", "sp:0.5"}
    loss = pd.read_csv(report / "question_loss.csv").set_index(["value", "condition"])
    assert loss.at[("mse", "sp:0.5"), "trials"] == 2 and loss.at[("mae", "sp:0.5"), "trials"] == 1  # the errored trial has no scores
    mae_psnr = loss.xs("mae", level="value")["psnr"].mean()
    assert mae_psnr == pytest.approx(board.at["aaaa0002", "test_psnr"])
    assert "What the hyperparameters do" in (report / "index.html").read_text()


# ----------------------------------------------------------------------------------------------------- curves


def test_curves_hold_every_model_at_every_condition_with_finite_numbers(env, report):
    curves = curves_of(report)
    conditions = set(curves["condition"])
    assert {"none", "sp:0.05", "sp:0.9", "gauss:10", "gauss:50", "sp:0.3+gauss:30"} <= conditions and len(conditions) == 1 + len(DEFAULT_CONDITIONS)
    first, second = ranked_ids(env["study"])[:2]
    expected = {f"AE#1 {first}", f"AE#2 {second}", *BASELINES}
    assert set(curves["model"]) == expected
    for model, rows in curves.groupby("model"):
        assert set(rows["condition"]) == ({"gauss:25"} if model == "bm3d" else conditions), model
    assert np.isfinite(curves[["psnr", "ssim", "level"]].to_numpy()).all()
    assert (curves.loc[curves["model"].isin(["nlm", "bm3d"]), "faces"] == 1).all()
    assert (curves.loc[~curves["model"].isin(["nlm", "bm3d"]), "faces"] == 24).all()
    tuned = pd.read_csv(report / "baseline_tuning.csv")
    assert set(tuned["baseline"]) == {"gaussian_blur", "tv", "nlm", "bm3d"}


def test_switching_median_beats_median3_at_half_density(report):
    at_half = curves_of(report).query("condition == 'sp:0.5'").set_index("model")
    assert at_half.at["switching_median", "psnr"] > at_half.at["median3", "psnr"] + 3.0
    assert at_half.at["switching_median", "ssim"] > at_half.at["median3", "ssim"]


@pytest.mark.parametrize("model", ["median3", "switching_median", "adaptive_median"])
def test_impulse_filters_get_worse_as_density_grows(report, model):
    rows = curves_of(report).query("model == @model and noise == 'sp'").sort_values("level")
    assert (np.diff(rows["psnr"]) < 0.05).all(), rows[["condition", "psnr"]]


def test_noisy_input_psnr_matches_the_analytic_value(env, report):
    """An impulse replaces a pixel x by 0 or 1 with equal chance, so the expected MSE is density * mean((x^2 + (1-x)^2) / 2)."""
    holdout_clean = load_splits(env["data"]).test_unique[:24].astype(np.float64) / 255.0
    expected_mse = ((holdout_clean**2 + (1 - holdout_clean) ** 2) / 2).mean(axis=(1, 2))
    curves = curves_of(report).drop_duplicates("condition").set_index("condition")
    for condition in ("sp:0.1", "sp:0.5", "sp:0.9"):
        density = noise_axis(condition).level
        assert curves.at[condition, "noisy_psnr"] == pytest.approx(np.mean(-10 * np.log10(density * expected_mse)), abs=0.15)
    assert curves.at["none", "noisy_psnr"] == PSNR_CAP  # the clean input: infinite PSNR, capped


def test_curves_are_plotted_and_kept_out_of_the_studys_tensorboard(env, report, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (report / "robustness.png").is_file()
    outside_trials = [p for p in env["study"].rglob("*tfevents*") if not p.relative_to(env["study"]).parts[0].startswith("trial_")]
    assert not outside_trials  # tensorboard --logdir STUDY shows the trials only
    assert "python -m results.curves" in (report / "index.html").read_text()
    out = tmp_path / "curves"
    with pytest.raises(SystemExit) as exit_info:
        curves_main([str(report), "--out", str(out)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    models = list(dict.fromkeys(curves_of(report)["model"]))
    assert {p.parent.name for p in out.rglob("*tfevents*")} == {tag_name(m) for m in models} | {"noisy_input"}
    assert f"AE_1_{ranked_ids(env['study'])[0]}" in {p.name for p in out.iterdir()}
    median = EventAccumulator(str(out / "switching_median"))
    median.Reload()
    for metric in ("psnr", "ssim"):
        for kind in ("sp", "gauss", "mixture"):
            assert f"robustness/{metric}_vs_{kind}" in median.Tags()["scalars"]
    assert [event.step for event in median.Scalars("robustness/psnr_vs_sp")] == [0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90]
    median3 = EventAccumulator(str(out / "median3"))
    median3.Reload()
    assert [event.step for event in median3.Scalars("robustness/psnr_vs_gauss")] == [0, 10, 15, 25, 35, 50]


# ------------------------------------------------------------------------------------ grids and error analysis


def test_grids_and_crops_are_written(report):
    for density in ("0.1", "0.3", "0.5", "0.7", "0.9"):
        assert (report / f"grid_sp{density}.png").stat().st_size > 10_000
    assert (report / "crops_sp0.3.png").is_file() and (report / "crops_sp0.7.png").is_file()


def test_error_analysis_findings_are_in_the_report(report):
    html = (report / "index.html").read_text()
    assert "does this study support the expected findings?" in html
    assert "The error analysis failed" not in html
    csvs = {p.stem for p in (report / "analysis").glob("*.csv")}
    assert {"regions", "contrast", "oversmoothing", "filled_in", "misalignment", "ssim_vs_psnr"} <= csvs
    assert "Filled-in artefacts" in html


# --------------------------------------------------------------------------------------------------- the HTML


def test_html_report_is_self_contained(report):
    html = (report / "index.html").read_text()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]*)"', html)
    assert len(sources) >= 12 and all(src.startswith("data:image/png;base64,") for src in sources)
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<link" not in html and "url(http" not in html
    assert re.findall(r'href="([^"]*)"', html) == [f"#{a}" for a in re.findall(r'<h2 id="([^"]+)"', html)]
    summary = (report / "summary.md").read_text()
    assert summary.startswith("# Study report: tiny") and "![robustness curves" in summary


def test_html_report_renders_every_figure_in_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium); cannot check that the report renders")
    probe = ("<script>window.addEventListener('load', () => { const all = Array.from(document.images);"
             " document.body.setAttribute('data-rendered', all.filter(i => i.complete && i.naturalWidth > 0).length + '/' + all.length); });</script>")
    page = tmp_path / "probe.html"
    page.write_text((report / "index.html").read_text().replace("</body>", probe + "</body>"))
    result = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
                             "--virtual-time-budget=10000", "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-rendered="(\d+)/(\d+)"', result.stdout)
    assert match, f"chromium did not run the probe: {result.stderr[-500:]}"
    rendered, total = int(match.group(1)), int(match.group(2))
    assert total == len(re.findall(r"<img ", (report / "index.html").read_text())) and rendered == total


# ---------------------------------------------------------------------------------------- refusals and errors


def test_the_command_rebuilds_the_report_with_the_studys_own_options_unless_flags_say_otherwise(env, tmp_path, capsys):
    from results.report import saved_options
    from study.config import build_config, study_report_options

    assert study_report_options(build_config("local")) == ReportOptions()  # the defaults are the first report's, the local preset's
    assert saved_options(env["study"]) == ReportOptions()  # a study without report_options (this one) gets the defaults
    assert study_report_options(build_config("full")).bm3d_faces == 200
    study = tmp_path / "own-options"
    shutil.copytree(env["study"], study, ignore=shutil.ignore_patterns("report"))
    config = yaml.safe_load((study / "study.yaml").read_text())
    own = {"top": 1, "faces": 8, "bm3d_faces": 1, "tune_faces": 2, "analysis": False, "bm3d_conditions": ["gauss:25"], "workers": 1}
    (study / "study.yaml").write_text(yaml.safe_dump({**config, "report_options": own}))
    with pytest.raises(SystemExit) as exit_info:
        main([str(study), "--tune-faces", "3"])
    assert exit_info.value.code == 0 and "report:" in capsys.readouterr().out
    filters = pd.read_csv(study / "report" / "baselines.csv").set_index("baseline")
    assert (filters["validated_on"] == 3).all() and filters.at["median3", "test_faces"] == 8 and filters.at["bm3d", "test_faces"] == 1
    assert filters.at["bm3d", "where"] == "gauss:25" and "Error analysis" not in (study / "report" / "summary.md").read_text()
    (study / "study.yaml").write_text(yaml.safe_dump({**config, "report_options": {"bm3d_face": 2}}))
    with pytest.raises(SystemExit) as exit_info:
        main([str(study), "--overwrite"])
    assert exit_info.value.code == 2 and "report_options.bm3d_face" in capsys.readouterr().err


def test_an_existing_report_is_refused(env, report, capsys):
    before = (report / "index.html").stat().st_mtime_ns
    with pytest.raises(SystemExit) as exit_info:
        main([str(env["study"])])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "exists" in error and "--overwrite" in error
    assert (report / "index.html").stat().st_mtime_ns == before


def test_missing_data_is_a_one_line_error(env, tmp_path, capsys):
    study = tmp_path / "moved"
    shutil.copytree(env["study"], study, ignore=shutil.ignore_patterns("report"))
    config = yaml.safe_load((study / "study.yaml").read_text())
    (study / "study.yaml").write_text(yaml.safe_dump({**config, "data": str(tmp_path / "gone.csv")}))
    with pytest.raises(SystemExit) as exit_info:
        main([str(study)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "FER2013 not found" in error and "--data" in error
    assert not (study / "report").exists() and not list(study.glob(".report.partial-*"))


def test_data_path_prefers_the_flag_then_the_environment_then_the_study(env, tmp_path, monkeypatch):
    study = read_study(env["study"])
    other = tmp_path / "other.csv"
    other.write_text("x")
    assert study_data_path(study, None) == env["data"]
    monkeypatch.setenv("FER2013_PATH", str(other))
    assert study_data_path(study, None) == other
    assert study_data_path(study, str(env["data"])) == env["data"]


def test_checkpoints_are_found_after_the_study_directory_moved(env, tmp_path):
    moved = tmp_path / "copied-back"
    shutil.copytree(env["study"], moved, ignore=shutil.ignore_patterns("report"))
    trials = pd.read_csv(moved / "trials.csv", dtype={"trial_id": str})
    trials["checkpoint"] = trials["checkpoint"].str.replace(str(env["study"]), "/cluster/home/studies/tiny", regex=False)
    trials.to_csv(moved / "trials.csv", index=False)
    study = read_study(moved)
    found = [checkpoint_file(study, row) for _, row in study.trials.iterrows()]
    assert found[:3] == [moved / f"trial_{t[0]}" / f"checkpoint_{t[4] - 1:06d}" / "checkpoint.pt" for t in TRIALS]
    assert found[3] is None


# ------------------------------------------------------------------------------------------------- comparison


def test_compare_puts_the_best_models_of_two_studies_on_the_same_curves(env, report, tmp_path):
    second = tmp_path / "tiny-b"
    shutil.copytree(env["study"], second, ignore=shutil.ignore_patterns("report"))
    config = yaml.safe_load((second / "study.yaml").read_text())
    (second / "study.yaml").write_text(yaml.safe_dump({**config, "name": "tiny-b", "holdout_conditions": ["sp:0.2", "gauss:30"]}))
    first, second_best = ranked_ids(env["study"])[:2]
    trials = pd.read_csv(second / "trials.csv", dtype={"trial_id": str})
    trials.loc[trials["trial_id"] == first, "best_val_loss"] = 1.0  # another winner in the second study
    trials.to_csv(second / "trials.csv", index=False)
    out = tmp_path / "comparison"
    build_comparison([env["study"], second], out, None, dataclasses.replace(OPTIONS, top=1))
    table = pd.read_csv(out / "compare.csv", dtype={"trial_id": str})
    assert list(table["study"]) == ["tiny", "tiny-b"] and list(table["trial_id"]) == [first, second_best]
    assert table[["test_psnr", "test_ssim", "psnr_sp0.5"]].map(math.isfinite).all().all()
    curves = pd.read_csv(out / "curves.csv")
    both = curves[curves["family"] == "learned"]
    assert set(both["model"]) == {f"tiny AE#1 {first}", f"tiny-b AE#1 {second_best}"}
    assert set(both.loc[both["model"] == f"tiny AE#1 {first}", "condition"]) == set(curves["condition"])
    assert "gauss:30" in set(curves["condition"])  # a condition only one study used is on every curve
    same = curves[(curves["model"] == "switching_median") & (curves["condition"] == "sp:0.5")]["psnr"].iloc[0]
    assert same == pytest.approx(curves_of(report).query("model == 'switching_median' and condition == 'sp:0.5'")["psnr"].iloc[0])
    html = (out / "index.html").read_text()
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', html))
    with pytest.raises(FileExistsError):
        build_comparison([env["study"], second], out, None, dataclasses.replace(OPTIONS, top=1))


def test_a_study_without_a_usable_trial_still_gets_a_report_of_the_baselines(env, report, tmp_path):
    study = tmp_path / "all-failed"
    shutil.copytree(env["study"], study, ignore=shutil.ignore_patterns("report"))
    trials = pd.read_csv(study / "trials.csv", dtype={"trial_id": str})
    trials["status"] = "error: RuntimeError: out of memory"
    trials.to_csv(study / "trials.csv", index=False)
    out = build_report(study, None, dataclasses.replace(OPTIONS, analysis=False))
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 4 and board["rank"].isna().all()
    curves = pd.read_csv(out / "curves.csv")
    assert set(curves["family"]) == {"classical"}
    html = (out / "index.html").read_text()
    assert "needs at least 2 completed trials; this study has 0" in html and "best baseline: biharmonic_inpaint" in html


def test_a_model_that_makes_faces_worse_is_flagged_where_it_does():
    import pandas as pd

    from results.sections import harm_warnings

    curves = pd.DataFrame({
        "model": ["AE#1 a", "AE#1 a", "AE#1 a", "median3", "AE#2 b"],
        "condition": ["none", "gauss:10", "sp:0.5", "gauss:10", "gauss:10"],
        "psnr": [45.0, 24.7, 30.0, 26.0, 29.0],
        "noisy_psnr": [60.0, 28.3, 11.0, 28.3, 28.3],
    })
    lines = harm_warnings(curves, ["AE#1 a", "AE#2 b"])
    assert lines == ["AE#1 a makes faces worse than its input at gauss:10: at gauss:10 it scores 24.70 dB out of a 28.30 dB input. "
                     "Do not use it for that noise."]


def test_realistic_conditions_have_their_own_curves():
    from results.curves import main as curves_main, noise_axis, tag_name

    assert (noise_axis("rv:0.2").kind, noise_axis("rv:0.2").level) == ("rv", 0.2)
    assert (noise_axis("sp:0.1+jpeg:90").kind, noise_axis("sp:0.1+jpeg:90").level) == ("jpeg", 10.0)
    assert noise_axis("sp:0.1+gauss:10").kind == "mixture" and noise_axis("sp:0.5").kind == "sp"


# ------------------------------------------------------------------------------- the reference filter, chosen on validation


def validation_rows(scores: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"baseline": name, "condition": condition, "faces": len(face_psnr), "face_psnr": face_psnr}
                         for (name, condition), face_psnr in scores.items()])


def test_the_reference_filter_is_the_best_on_validation_even_where_another_is_better_on_test():
    from results.classical import best_baseline, reference_baselines

    validation = validation_rows({("median3", "sp:0.1"): [30.0, 30.0, 30.0, 30.0], ("switching_median", "sp:0.1"): [29.0, 29.0, 29.0, 29.0],
                                  ("median3", "sp:0.5"): [20.0, 20.0, 20.0, 20.0], ("switching_median", "sp:0.5"): [19.0, 19.0, 19.0, 19.0],
                                  ("nlm", "gauss:25"): [26.0, 20.0], ("gaussian_blur", "gauss:25"): [25.0, 25.0, 25.0, 25.0]})
    curves = pd.DataFrame({"model": ["median3", "switching_median"] * 2 + ["nlm", "gaussian_blur"], "family": "classical",
                           "condition": ["sp:0.1", "sp:0.1", "sp:0.5", "sp:0.5", "gauss:25", "gauss:25"],
                           "psnr": [31.0, 35.0, 21.0, 28.0, 27.0, 24.0], "ssim": 0.5, "ssim_gauss": 0.6, "faces": [24] * 4 + [4, 24]})
    assert best_baseline(validation) == "median3"  # switching_median wins on the test faces at both densities
    references = reference_baselines(validation, curves).set_index("condition")
    assert references.loc["sp:0.1", "baseline"] == "median3" and references.loc["sp:0.1", "test_psnr"] == 31.0
    assert references.loc["sp:0.5", ["baseline", "test_psnr", "val_psnr", "val_faces"]].tolist() == ["median3", 21.0, 20.0, 4]
    # NLM saw 2 validation faces: both filters are compared on those 2 (NLM 23.0 < 25.0), not NLM's 2 against blur's 4
    assert references.loc["gauss:25", ["baseline", "val_faces", "test_psnr", "test_faces"]].tolist() == ["gaussian_blur", 2, 24.0, 24]


def test_every_filter_is_validated_on_the_same_faces_and_noise_at_its_tuned_setting(tmp_path):
    from denoise_core.baselines import TUNABLE
    from denoise_core.data import to_float
    from denoise_core.holdout import make_holdout
    from results.classical import VAL_SEED, BaselinePlan, baseline_denoiser, started
    from results.score_cache import ScoreCache
    from synthetic import smooth_faces

    faces = smooth_faces(20, seed=5)
    plan = BaselinePlan(faces=8, slow_faces=2, tune_faces=6, names=("median3", "gaussian_blur", "nlm"), bm3d_conditions=())
    conditions = ("sp:0.3", "gauss:25")
    holdout = make_holdout(faces[12:], conditions, seed=3)
    cache = ScoreCache(tmp_path / "cache")
    with started(holdout, faces[:12], conditions, plan, cache) as run:
        tuning, validation = run.validation()
        first = run.curves()
    validation = validation.set_index(["baseline", "condition"])
    assert (validation["faces"] == 6).all() and len(validation) == 6  # NLM is tuned on 2 faces (slow_faces) but validated on all 6
    assert tuning.set_index("baseline").loc["nlm", "val_faces"].tolist() == [2, 2]
    for condition in conditions:
        noisy = to_float(make_holdout(faces[:6], (condition,), VAL_SEED).noisy[0])  # one noise draw for every filter
        for name in plan.names:
            own = tuning[(tuning["baseline"] == name) & (tuning["condition"] == condition)]
            restored = baseline_denoiser(name, float(own["value"].iloc[0]) if name in TUNABLE else None)(noisy).astype(np.float64)
            expected = [float(10 * np.log10(1 / np.mean((r - c) ** 2))) for r, c in zip(restored, to_float(faces[:6]).astype(np.float64))]
            assert validation.loc[(name, condition), "face_psnr"] == pytest.approx(expected, abs=1e-9), (name, condition)
            if len(own):  # the tuning score is the mean over the faces it was tuned on
                assert np.mean(expected[:int(own["val_faces"].iloc[0])]) == pytest.approx(float(own["val_psnr"].iloc[0]), abs=1e-9)
    with started(holdout, faces[:12], conditions, plan, cache) as run:  # from the cache: the same numbers, nothing computed
        _, again = run.validation()
        pd.testing.assert_frame_equal(run.curves(), first)
        assert run.seconds == {} and run.pending == []
    assert again.set_index(["baseline", "condition"])["face_psnr"].to_dict() == validation["face_psnr"].to_dict()


def test_the_filters_score_the_same_on_worker_processes_as_here(tmp_path):
    from results.classical import BaselinePlan, InProcess, started
    from results.curves import with_clean_point
    from results.score_cache import ScoreCache
    from synthetic import smooth_faces

    faces = smooth_faces(30, seed=7)
    conditions = ("none", "sp:0.3", "gauss:25", "sp:0.1+gauss:10")
    holdout = with_clean_point(make_holdout(faces[12:], conditions[1:], seed=3))
    tables = []
    for workers in (1, 2):
        plan = BaselinePlan(faces=12, slow_faces=1, tune_faces=5, bm3d_conditions=("gauss:25",), workers=workers)
        with started(holdout, faces[:12], conditions, plan, ScoreCache(None)) as run:
            assert isinstance(run.executor, InProcess) == (workers == 1)
            tuning, validation = run.validation()
            curves = run.curves().drop(columns="seconds")
        tables.append((tuning, validation, curves))
    (tuning, validation, curves), (tuning2, validation2, curves2) = tables
    pd.testing.assert_frame_equal(tuning, tuning2)
    pd.testing.assert_frame_equal(validation, validation2)
    pd.testing.assert_frame_equal(curves, curves2)
    assert len(curves) == 9 * 4 + 1 and curves["psnr"].notna().all() and (tuning["val_faces"] == [5] * 8 + [1] * 5).all()  # BM3D: gauss:25


def test_the_report_chooses_its_reference_filters_on_validation_and_says_so(env, report):
    references = pd.read_csv(report / "reference_baselines.csv")
    curves = curves_of(report)
    classical = curves[curves["family"] == "classical"].set_index(["model", "condition"])
    assert set(references["condition"]) == set(classical.index.get_level_values("condition"))
    for row in references.itertuples():
        assert row.test_psnr == pytest.approx(classical.loc[(row.baseline, row.condition), "psnr"])
    assert (references["val_faces"] >= 1).all()
    summary = (report / "summary.md").read_text()
    assert "chosen on validation" in summary and "Gaussian-window SSIM" in summary


# ------------------------------------------------------------------------------------- incomplete or copied studies


def test_a_copied_study_scores_its_own_checkpoints_not_the_originals(env, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(env["study"], copy, ignore=shutil.ignore_patterns("report"))
    study = read_study(copy)  # trials.csv still records the original's absolute checkpoint paths, which exist
    found = [checkpoint_file(study, row) for _, row in study.trials.iterrows()]
    assert found[:3] == [copy / f"trial_{t[0]}" / f"checkpoint_{t[4] - 1:06d}" / "checkpoint.pt" for t in TRIALS]
    shutil.rmtree(copy / f"trial_{TRIALS[0][0]}")
    assert checkpoint_file(read_study(copy), read_study(copy).trials.iloc[0]) is None  # never the original's file


def test_an_unfinished_study_is_said_in_the_log_and_in_the_reports_text(env, report):
    assert not (env["study"] / "best").exists()
    assert f"{env['study']} has no best/model.pt: the study did not finish" in (report / "summary.md").read_text()


def test_a_short_trial_table_a_study_given_twice_and_too_many_faces_are_warned(env, caplog):
    from results.report import reading_warnings

    study = read_study(env["study"])
    study.config["num_samples"] = 9
    holdout = make_holdout(np.zeros((5, 48, 48), np.uint8), ("sp:0.1",), seed=1)
    with caplog.at_level("WARNING", logger="results.report"):
        warnings = reading_warnings([study, study], 100000, holdout)
    assert warnings[0] == f"{env['study'] / 'trials.csv'} holds 4 trials but the study planned 9 (num_samples): the table is truncated or the study did not finish"
    assert f"{env['study'].resolve()} is given 2 times: its models are compared with themselves" in warnings
    assert warnings[-1] == "--faces 100000 is more than the 5 faces of the hold-out; every score uses those 5"
    assert [record.getMessage() for record in caplog.records] == warnings
    assert reading_warnings([dataclasses.replace(study, config={**study.config, "num_samples": 4})], 5, holdout) == warnings[1:2]


# ------------------------------------------------------------------------------------------------- progress


def test_the_studys_console_shows_the_reports_progress_from_verbose_1(capsys):
    import logging

    from denoise_core.cli import setup_logging
    from study.run import show_report_progress

    root, results = logging.getLogger(), logging.getLogger("results")
    handlers, level, results_level = root.handlers[:], root.level, results.level
    root.handlers.clear()
    try:
        setup_logging(quiet=True)  # the study's logging at verbose 1: warnings only
        logging.getLogger("results.classical").info("hidden")
        show_report_progress(1)
        logging.getLogger("results.classical").info("baseline bm3d: 3 conditions")
        logging.getLogger("denoise_core.data").info("still hidden")
        assert [line.split(" ", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["INFO baseline bm3d: 3 conditions"]
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        results.setLevel(results_level)


@pytest.mark.parametrize("faces, reused", [(OPTIONS.faces, True), (OPTIONS.faces - 4, False)])
def test_the_study_s_own_hold_out_scores_are_reused_only_on_the_same_faces(env, report, tmp_path, faces, reused):
    """best/holdout.csv holds what the study scored of its best trial; the report takes those rows instead of scoring them
    again (their denoising seconds unknown), with the same numbers, and ignores them when taken on other faces."""
    from denoise_core.data import default_cache_dir
    from denoise_core.evaluate import evaluate_on_holdout, model_denoiser
    from denoise_core.holdout import holdout_for

    study = tmp_path / "tiny"
    shutil.copytree(env["study"], study, ignore=shutil.ignore_patterns("report"))
    best = ranked_ids(study)[0]
    model, _ = load_model(next((study / f"trial_{best}").glob("checkpoint_*/checkpoint.pt")))
    conditions = ("sp:0.1", "sp:0.5", "gauss:25")
    holdout = holdout_for(load_splits(env["data"]).test_unique, default_cache_dir(), conditions)
    table = evaluate_on_holdout(model_denoiser(model, "cpu"), holdout, conditions, faces)
    table.insert(0, "trial_id", best)
    (study / "best").mkdir()
    table.to_csv(study / "best" / "holdout.csv", index=False)
    again = curves_of(build_report(study, None, OPTIONS)).set_index(["model", "condition"])
    before = curves_of(report).set_index(["model", "condition"])
    learned = again[again["family"] == "learned"]
    assert np.allclose(learned["psnr"], before.loc[learned.index, "psnr"], rtol=0, atol=1e-9)
    own = learned.loc[f"AE#1 {best}"]
    assert own.loc[list(conditions), "seconds"].isna().all() == reused
    assert own.drop(list(conditions))["seconds"].notna().all()
