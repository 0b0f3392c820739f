"""Robustness curves: PSNR and SSIM of every denoiser against the noise level, on the fixed noisy hold-out.

``python -m results.curves REPORT_DIR --out LOGDIR`` writes a report's or a comparison's curves (its ``curves.csv``) as
TensorBoard runs, one per model. They are written on demand and never inside a study, so that ``tensorboard --logdir
STUDY`` shows the trials' training curves only.

Curves run over salt-and-pepper density, Gaussian sigma and the S&P + Gaussian mixtures. Density 0 is the
clean face itself ("none"): it shows what a denoiser does to an image that needs nothing. A denoiser that
returns an image unchanged has infinite PSNR, so per-image PSNR is capped at ``denoise_core.metrics.PSNR_CAP``
dB before averaging, as in every other score of the project; in practice only the clean point is affected.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.data import to_float
from denoise_core.errors import InputError, MissingFile
from denoise_core.evaluate import score_images, score_ssim_gaussian
from denoise_core.holdout import DEFAULT_CONDITIONS, Holdout
from denoise_core.noise import NoiseSpec
from denoise_core.study_files import STUDY_CONFIG
from results.output import check_output, publish, scratch_dir

Denoiser = Callable[[np.ndarray], np.ndarray]
CLEAN = "none"
CURVES_CSV = "curves.csv"  # what a report and a comparison write the curves to
NOISY_RUN = "noisy_input"  # the TensorBoard run of what doing nothing scores
KINDS = ("sp", "gauss", "mixture", "rv", "jpeg")
AXIS_LABELS = {"sp": "salt-and-pepper density", "gauss": "Gaussian sigma (of 255)", "mixture": "mixture: S&P density + Gaussian sigma",
               "rv": "random-valued impulse density", "jpeg": "noise, then saved as JPEG of quality Q"}
LABELLED_KINDS = ("mixture", "jpeg")  # kinds drawn on a categorical axis, one named tick per condition in hold-out order
COLUMNS = ("model", "family", "condition", "noise", "level", "psnr", "ssim", "noisy_psnr", "noisy_ssim", "faces", "parameter", "seconds",
           "ssim_gauss", "noisy_ssim_gauss")  # ssim_gauss: the Gaussian-window SSIM of the literature (denoise_core.metrics.ssim_gaussian)
SCORES = ("psnr", "ssim", "ssim_gauss")  # what a cached score holds: an entry without one of them is scored again


@dataclass(frozen=True)
class NoiseAxis:
    """Where a condition sits on the curves: its kind and its x value (density, or sigma for Gaussian)."""

    kind: str  # NoiseSpec.kind: "clean", "sp", "gauss", "mixture", "rv" or "jpeg"
    level: float


def canonical(condition: str) -> str:
    return str(NoiseSpec.parse(condition))


def noise_axis(condition: str) -> NoiseAxis:
    spec = NoiseSpec.parse(condition)
    if spec.is_blind:
        raise InputError(f"'{condition}' is a range; curves need fixed noise levels")
    level = {"jpeg": 100.0 - spec.jpeg[0], "rv": spec.random[0], "mixture": spec.density[0], "sp": spec.density[0],
             "gauss": spec.sigma[0], "clean": 0.0}[spec.kind]
    return NoiseAxis(spec.kind, level)


def curve_conditions(study_conditions: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The clean point, the default hold-out conditions (synthetic and realistic), then any other fixed condition the study used.

    A study may have been scored on a subset (the smoke preset uses 4); curves always span the full default
    grid so that every report and every comparison has the same x values.
    """
    conditions = [CLEAN, *(canonical(c) for c in DEFAULT_CONDITIONS)]
    for condition in study_conditions:
        if canonical(condition) not in conditions and not NoiseSpec.parse(condition).is_blind:
            conditions.append(canonical(condition))
    return tuple(conditions)


def with_clean_point(holdout: Holdout) -> Holdout:
    """The hold-out with the clean faces as condition "none" in front (density 0 on every curve)."""
    noisy = np.concatenate([holdout.clean[None], holdout.noisy])
    return dataclasses.replace(holdout, noisy=noisy, conditions=(CLEAN, *holdout.conditions), checksum=f"{holdout.checksum}+{CLEAN}")


def sp_conditions(conditions: tuple[str, ...]) -> tuple[str, ...]:
    """The salt-and-pepper-only conditions among ``conditions`` (what the leaderboard's test score averages)."""
    return tuple(c for c in conditions if noise_axis(c).kind == "sp")


def input_scores(holdout: Holdout, condition: str, faces: int | None) -> dict[str, float]:
    """Mean capped PSNR, SSIM and Gaussian-window SSIM of the noisy input itself: what doing nothing scores."""
    return slab_input_scores(holdout.clean[:faces], holdout.noisy_for(condition)[:faces])


def slab_input_scores(clean: np.ndarray, noisy: np.ndarray) -> dict[str, float]:
    """``input_scores`` of uint8 clean and noisy faces given as arrays."""
    noisy, clean = to_float(noisy), to_float(clean)
    psnr, ssim = score_images(noisy, clean)
    return {"noisy_psnr": float(psnr.mean()), "noisy_ssim": float(ssim.mean()), "noisy_ssim_gauss": float(score_ssim_gaussian(noisy, clean).mean())}


def score(denoiser: Denoiser, holdout: Holdout, condition: str, faces: int | None, noisy: dict[str, float] | None = None) -> dict[str, float]:
    """Mean capped PSNR, SSIM and Gaussian-window SSIM of the denoiser (and of its noisy input, unless given) on the first
    ``faces`` hold-out faces."""
    return score_slab(denoiser, holdout.clean[:faces], holdout.noisy_for(condition)[:faces], noisy)


def score_slab(denoiser: Denoiser, clean: np.ndarray, noisy: np.ndarray, noisy_scores: dict[str, float] | None = None) -> dict[str, float]:
    """``score`` on uint8 clean and noisy faces given as arrays."""
    start = time.perf_counter()
    restored = denoiser(to_float(noisy))
    seconds = time.perf_counter() - start
    target = to_float(clean)
    psnr, ssim = score_images(restored, target)
    return {"psnr": float(psnr.mean()), "ssim": float(ssim.mean()), "ssim_gauss": float(score_ssim_gaussian(restored, target).mean()),
            **(noisy_scores or slab_input_scores(clean, noisy)), "faces": len(clean), "seconds": seconds}


def curve_row(model: str, family: str, condition: str, scores: dict[str, float], parameter: str = "") -> dict:
    axis = noise_axis(condition)
    return {"model": model, "family": family, "condition": canonical(condition), "noise": axis.kind, "level": axis.level,
            **scores, "parameter": parameter}


def model_curves(models: dict[str, Denoiser], holdout: Holdout, conditions: tuple[str, ...], faces: int | None, family: str = "learned") -> pd.DataFrame:
    """One row per (model, condition), models in the given order; the noisy input is scored once per condition."""
    rows = []
    for condition in conditions:
        noisy = input_scores(holdout, condition, faces)
        rows += [curve_row(name, family, condition, score(denoiser, holdout, condition, faces, noisy)) for name, denoiser in models.items()]
    order = {name: index for index, name in enumerate(models)}
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    return table.sort_values("model", key=lambda names: names.map(order), kind="stable").reset_index(drop=True)


def series(table: pd.DataFrame, model: str, kind: str, metric: str) -> pd.DataFrame:
    """The (level, value) points of one curve, the clean point first; ``metric`` may be ``noisy_psnr``."""
    rows = table[(table["model"] == model) & table["noise"].isin([kind, "clean"])].sort_values("level")
    return rows[["level", "condition", metric]].rename(columns={metric: "value"})


def curve_label(table: pd.DataFrame, model: str, total_faces: int) -> str:
    faces = int(table.loc[table["model"] == model, "faces"].min())
    return f"{model} (first {faces} faces)" if faces < total_faces else model


def plot_curves(table: pd.DataFrame, path: Path, title: str) -> None:
    """PSNR (top) and SSIM (bottom) against S&P density, Gaussian sigma and the mixtures; learned models bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if (table["noise"] == k).any()]
    models = list(dict.fromkeys(table["model"]))
    total_faces = int(table["faces"].max())
    learned = [m for m in models if (table.loc[table["model"] == m, "family"] == "learned").all()]
    palette = plt.get_cmap("tab10").colors + plt.get_cmap("Dark2").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.6 * len(kinds) + 0.6, 9.0), squeeze=False)
    reference = table[table["faces"] == total_faces]
    for column, kind in enumerate(kinds):
        named = list(dict.fromkeys(table.loc[table["noise"] == kind, "condition"])) if kind in LABELLED_KINDS else []
        position = {CLEAN: 0.0, **{condition: float(i + 1) for i, condition in enumerate(named)}}

        def along_x(points: pd.DataFrame) -> pd.DataFrame:
            """The points with their x value, in drawing order."""
            return points.assign(x=points["condition"].map(position) if named else points["level"]).sort_values("x", kind="stable")

        for row, metric in enumerate(("psnr", "ssim")):
            ax = axes[row][column]
            if len(reference):
                noisy = series(reference, reference["model"].iloc[0], kind, f"noisy_{metric}")
                noisy = along_x(noisy[noisy["level"] > 0])
                ax.plot(noisy["x"], noisy["value"], ":", color="black", linewidth=1.5, label="noisy input")
            for model in models:
                points = along_x(series(table, model, kind, metric))
                if points.empty:
                    continue
                bold = model in learned
                subset = int(table.loc[table["model"] == model, "faces"].min()) < total_faces
                ax.plot(points["x"], points["value"], "-" if not subset else "--", marker="o" if bold else ".",
                        linewidth=2.4 if bold else 1.2, markersize=5 if bold else 4, color=colors[model],
                        label=curve_label(table, model, total_faces), alpha=1.0 if bold else 0.85)
            if named:
                ax.set_xticks(range(len(named) + 1), ["clean", *(c.replace("+", "\n+") for c in named)], fontsize=7)
            ax.set_xlabel(AXIS_LABELS[kind])
            ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
            ax.grid(True, alpha=0.3)
    legend: dict[str, object] = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=min(5, len(legend)), fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.035 * ((len(legend) + 4) // 5) + 0.01, 1, 0.97))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def tensorboard_step(kind: str, level: float) -> int:
    """Density as a percentage (S&P, mixture) or sigma (Gaussian): TensorBoard steps are integers."""
    return int(round(level * 100)) if kind in ("sp", "mixture", "rv") else int(round(level))


def tensorboard_tag(metric: str, kind: str) -> str:
    return f"robustness/{metric}_vs_{kind}"


def write_tensorboard(table: pd.DataFrame, log_dir: Path) -> None:
    """One TensorBoard run per model (and one for the noisy input) under ``log_dir``, each with the tags
    ``robustness/<metric>_vs_<kind>``, plus a Custom Scalars layout with one chart per metric and kind.

    TensorBoard colours a line by its run, so each model is its own run: as tags of one run, every model
    was drawn in the same colour.
    """
    from torch.utils.tensorboard import SummaryWriter

    kinds = [k for k in KINDS if (table["noise"] == k).any()]
    models = list(dict.fromkeys(table["model"]))
    layout = {"robustness": {f"{metric} vs {kind}": ["Multiline", [f"^{tensorboard_tag(metric, kind)}$"]] for kind in kinds for metric in ("psnr", "ssim")}}
    runs = {tag_name(model): (model, "") for model in models} | {NOISY_RUN: (models[0], "noisy_")}
    if len(runs) != len(models) + 1:
        raise InputError(f"the models {', '.join(models)} do not give distinct TensorBoard run names; rename them in the curves table")
    for index, (run, (model, prefix)) in enumerate(runs.items()):
        writer = SummaryWriter(str(log_dir / run))
        try:
            for kind in kinds:
                for metric in ("psnr", "ssim"):
                    for _, point in series(table, model, kind, f"{prefix}{metric}").iterrows():
                        if not prefix or point["level"] > 0:
                            writer.add_scalar(tensorboard_tag(metric, kind), float(point["value"]), tensorboard_step(kind, point["level"]))
            if index == 0:
                writer.add_custom_scalars(layout)
        finally:
            writer.close()


def tag_name(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)


def is_finite_table(table: pd.DataFrame) -> bool:
    return all(math.isfinite(v) for v in table[["psnr", "ssim"]].to_numpy().ravel())


def export_tensorboard(source: Path, out: Path, overwrite: bool = False) -> Path:
    """``source``'s curves.csv as TensorBoard runs in ``out``, built beside it and moved into place like a report."""
    if not (source / CURVES_CSV).is_file():
        raise MissingFile(f"{source} has no {CURVES_CSV}: give a report's directory (STUDY/report) or a comparison's --out")
    study = next((d for d in (out.resolve(), *out.resolve().parents) if (d / STUDY_CONFIG).is_file()), None)
    if study is not None:
        raise InputError(f"--out {out} is inside the study {study}, where tensorboard --logdir would mix these curves with its "
                         "trials; choose a directory outside it")
    check_output(out, overwrite, "tensorboard curves", (source,))
    table = pd.read_csv(source / CURVES_CSV)
    missing = [c for c in ("model", "condition", "noise", "level", "psnr", "ssim", "noisy_psnr", "noisy_ssim") if c not in table.columns]
    if missing or table.empty:
        raise InputError(f"{source / CURVES_CSV} is not a curves table ({'no rows' if table.empty else 'no column ' + ', '.join(missing)}); "
                         "rebuild the report with --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = scratch_dir(out, "tensorboard curves")
    try:
        write_tensorboard(table, work)
        publish(work, out, overwrite, "tensorboard curves")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def tensorboard_hint(source: Path, name: str) -> str:
    """The commands that open ``source``'s curves in TensorBoard, for the report's text and the commands' last lines."""
    return f"python -m results.curves {source} --out curves/{name} && tensorboard --logdir curves/{name}"


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m results.curves", description="Write a report's or a comparison's robustness curves "
                            "(its curves.csv) as TensorBoard runs, one per model, in a log directory outside the study.")
    parser.add_argument("source", type=Path, help="a report's directory (STUDY/report) or a comparison's --out, holding curves.csv")
    parser.add_argument("--out", type=Path, required=True, help="the TensorBoard log directory to write, outside every study (e.g. curves/NAME)")
    parser.add_argument("--overwrite", action="store_true", help="replace an --out that this command wrote before")
    args = parser.parse_args(argv)

    def run() -> None:
        setup_logging()
        out = export_tensorboard(args.source, args.out, args.overwrite)
        print(f"tensorboard --logdir {out}  (Scalars or Custom Scalars: one line per model; steps are density x 100 or sigma)")

    run_cli(run, "results.curves")


if __name__ == "__main__":
    main()
