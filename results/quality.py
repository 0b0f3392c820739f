"""One model file against every classical filter on the fixed noisy hold-out: the tables behind the model card.

``bench/quality.py`` prints them and writes them into ``models/README.md``, so the card's numbers are this
code's output, never typed by hand. The bar a shipped model must clear: at every condition it beats the
strongest classical filter by ``MARGIN_DB`` for its noise kind (1 dB for salt-and-pepper, 0.5 dB for Gaussian
noise, 1.5 dB for the mixture, 2 dB for random-valued impulses and noise saved as JPEG), by more where
``CONDITION_MARGIN_DB`` says so (dense impulses against known-mask inpainting, Gaussian noise against BM3D),
and for salt-and-pepper also matches its SSIM. NLM and BM3D only run on the first ``slow_faces`` faces, so
each margin is measured with the model on the same faces as the filter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from denoise_core.checkpoint import load_model
from denoise_core.data import Splits, default_cache_dir
from denoise_core.errors import InputError
from denoise_core.evaluate import model_denoiser
from denoise_core.holdout import DEFAULT_CONDITIONS, REALISTIC_CONDITIONS, SYNTHETIC_CONDITIONS, holdout_for
from denoise_core.noise import most_specialised, trained_kinds
from denoise_core.inference import resolve_device
from results.classical import BM3D_CONDITIONS, BaselinePlan, baseline_curves
from results.curves import canonical, model_curves, noise_axis, score
from results.score_cache import ScoreCache

KIND_NAMES = {"sp": "salt-and-pepper", "gauss": "Gaussian noise", "mixture": "S&P + Gaussian mixtures", "rv": "random-valued impulses",
              "jpeg": "noise saved as JPEG"}
MARGIN_DB = {"sp": 1.0, "gauss": 0.5, "mixture": 1.5, "rv": 2.0, "jpeg": 2.0}
# Where the learned face prior must buy more than the kind's margin: dense impulses, where known-mask inpainting
# is strong, and the Gaussian levels where BM3D is (DRUNet's margin over BM3D on BSD68 is +0.84 to +0.97 dB).
CONDITION_MARGIN_DB = {"sp:0.3": 1.5, "sp:0.5": 1.5, "sp:0.7": 1.5, "sp:0.9": 1.0, "gauss:10": 1.0, "gauss:25": 1.0, "gauss:50": 1.0}
REPLACEMENT_DB = 0.3  # how far below the model it replaced a new default model may fall at a synthetic condition
BAR_CONDITIONS = ("sp:0.05", "sp:0.1", "sp:0.2", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9", "gauss:10", "gauss:25", "gauss:50", "sp:0.1+gauss:10",
                  *REALISTIC_CONDITIONS)


@dataclass(frozen=True)
class QualityOptions:
    conditions: tuple[str, ...] = DEFAULT_CONDITIONS
    faces: int | None = None  # hold-out faces for the model and the fast filters (None: all ~3,300)
    slow_faces: int = 200  # hold-out faces for NLM and BM3D
    tune_faces: int = 64  # validation faces for tuning each filter's parameter, per condition
    bm3d_conditions: tuple[str, ...] = BM3D_CONDITIONS
    baselines: tuple[str, ...] | None = None  # None: every filter in denoise_core.baselines
    cache_dir: str | None = None  # baseline scores; None: $FACESTUDY_CACHE/baseline-scores
    device: str = "auto"
    replaces: Path | None = None  # the model file the first model replaced: it must stay within REPLACEMENT_DB of it


@dataclass(frozen=True)
class Quality:
    scores: pd.DataFrame  # long: model, family, condition, psnr, ssim, faces, ... (curve rows), every model and filter
    margins: pd.DataFrame  # one row per (model, condition): the model against its strongest rival, and the bar
    kinds: dict[str, tuple[str, ...]]  # model name -> the noise kinds it was trained for
    replaced: pd.DataFrame  # the first model against the file it replaced, per synthetic condition (empty if none)


def recommended_model(kinds: dict[str, tuple[str, ...]], kind: str) -> str | None:
    """The model to use for a noise kind: the most specialised one trained for it (fewest kinds; first on a tie),
    else the most general one, as the default model is what a user gets for noise no model was trained on."""
    if not kinds:
        return None
    return most_specialised(kinds, kind) or max(kinds, key=lambda name: len(kinds[name]))


def evaluate_model_files(model_paths: list[Path], splits: Splits, options: QualityOptions = QualityOptions()) -> Quality:
    """Score the models and every baseline on the hold-out of ``splits.test_unique``; margins against the bar."""
    device = resolve_device(options.device)
    denoisers, kinds = {}, {}
    for path in model_paths:
        model, meta = load_model(path, device)
        name = Path(path).stem
        denoisers[name] = model_denoiser(model, device)
        kinds[name] = trained_kinds(meta["config"]["noise"])
    conditions = tuple(canonical(c) for c in options.conditions)
    holdout = holdout_for(splits.test_unique, default_cache_dir(), conditions)
    learned = model_curves(denoisers, holdout, conditions, options.faces)
    plan = BaselinePlan(faces=options.faces, slow_faces=options.slow_faces, tune_faces=options.tune_faces,
                        bm3d_conditions=options.bm3d_conditions, **({"names": options.baselines} if options.baselines else {}))
    cache = ScoreCache(Path(options.cache_dir) if options.cache_dir else default_cache_dir() / "baseline-scores")
    classical, _ = baseline_curves(holdout, splits.val, conditions, plan, cache)
    rows = []
    for name, denoise in denoisers.items():
        for condition in conditions:
            own = learned[(learned["model"] == name) & (learned["condition"] == condition)].iloc[0]
            rivals = classical[classical["condition"] == condition]
            row = _margin_row(condition, own, rivals, lambda faces: score(denoise, holdout, condition, faces))
            rows.append({"model": name, **row, "recommended": recommended_model(kinds, noise_axis(condition).kind) == name})
    replaced = pd.DataFrame()
    if options.replaces is not None:
        first = next(iter(denoisers))
        old_model, _ = load_model(options.replaces, device)
        kept = tuple(c for c in conditions if c in {canonical(s) for s in SYNTHETIC_CONDITIONS})
        before = model_curves({"before": model_denoiser(old_model, device)}, holdout, kept, options.faces)
        replaced = replacement_rows(learned[learned["model"] == first], before, Path(options.replaces).as_posix())  # as given: the name alone may be the new file's
    return Quality(scores=pd.concat([learned, classical], ignore_index=True), margins=pd.DataFrame(rows), kinds=kinds, replaced=replaced)


def replacement_rows(after: pd.DataFrame, before: pd.DataFrame, before_name: str) -> pd.DataFrame:
    """Per condition scored by both: the new model's PSNR, the replaced one's, the difference and whether it is
    within ``REPLACEMENT_DB``."""
    joined = after.merge(before, on="condition", suffixes=("", "_before"))
    difference = joined["psnr"] - joined["psnr_before"]
    return pd.DataFrame({"model": joined["model"], "replaced": before_name, "condition": joined["condition"], "psnr": joined["psnr"],
                         "psnr_before": joined["psnr_before"], "difference_db": difference, "within_bar": difference >= -REPLACEMENT_DB})


def replacement_markdown(replaced: pd.DataFrame) -> str:
    lines = ["| noise | " + f"{replaced['model'].iloc[0]} | {replaced['replaced'].iloc[0]} (replaced) | difference | met (>= -{REPLACEMENT_DB} dB) |",
             "|---|--:|--:|--:|:-:|"]
    for row in replaced.itertuples():
        lines.append(f"| {row.condition} | {row.psnr:.2f} | {row.psnr_before:.2f} | {row.difference_db:+.2f} dB | {'yes' if row.within_bar else 'NO'} |")
    lines += ["", f"Within {REPLACEMENT_DB} dB of the replaced model at {int(replaced['within_bar'].sum())} of {len(replaced)} synthetic conditions."]
    return "\n".join(lines)


def _margin_row(condition: str, own: pd.Series, rivals: pd.DataFrame, score_on) -> dict:
    """The rival with the smallest PSNR margin, each margin measured on that rival's faces."""
    same_faces = {int(own["faces"]): {"psnr": own["psnr"], "ssim": own["ssim"]}}
    worst = None
    for _, rival in rivals.iterrows():
        faces = int(rival["faces"])
        if faces not in same_faces:
            same_faces[faces] = score_on(faces)
        margin = same_faces[faces]["psnr"] - rival["psnr"]
        if worst is None or margin < worst[0]:
            worst = (margin, rival, same_faces[faces])
    kind = noise_axis(condition).kind
    margin, rival, mine = worst
    required = required_margin(condition)
    ssim_ok = kind != "sp" or mine["ssim"] >= rival["ssim"]
    return {"condition": condition, "model_psnr": own["psnr"], "model_ssim": own["ssim"], "rival": rival["model"],
            "rival_psnr": rival["psnr"], "rival_ssim": rival["ssim"], "model_psnr_same_faces": mine["psnr"],
            "model_ssim_same_faces": mine["ssim"], "faces": int(rival["faces"]), "margin_db": margin,
            "required_db": required, "meets_bar": bool(margin >= required and ssim_ok)}


def required_margin(condition: str) -> float:
    """The PSNR margin (dB) over the strongest classical filter that a model must reach at this condition."""
    return CONDITION_MARGIN_DB.get(canonical(condition), MARGIN_DB.get(noise_axis(condition).kind, 0.0))


def margins_markdown(margins: pd.DataFrame) -> str:
    """The bar table: each condition's recommended model against its strongest classical rival."""
    margins = margins[margins["recommended"]]
    lines = ["| noise | model | its PSNR / SSIM | strongest filter | its PSNR / SSIM | model on its faces | margin | needed | met |",
             "|---|---|--:|---|--:|--:|--:|--:|:-:|"]
    for row in margins.itertuples():
        lines.append(f"| {row.condition} | {row.model} | {row.model_psnr:.2f} / {row.model_ssim:.3f} | {row.rival} ({row.faces} faces) | "
                     f"{row.rival_psnr:.2f} / {row.rival_ssim:.3f} | {row.model_psnr_same_faces:.2f} / {row.model_ssim_same_faces:.3f} | "
                     f"{row.margin_db:+.2f} dB | {row.required_db:+.1f} dB | {'yes' if row.meets_bar else 'NO'} |")
    named = margins[margins["condition"].isin([canonical(c) for c in BAR_CONDITIONS])]
    lines += ["", f"Bar met at {int(named['meets_bar'].sum())} of the {len(named)} conditions the bar names, "
                  f"and at {int(margins['meets_bar'].sum())} of all {len(margins)} conditions."]
    return "\n".join(lines)


def scores_markdown(scores: pd.DataFrame, metrics: tuple[str, ...] = ("psnr", "ssim")) -> str:
    """Every denoiser at every condition, its ``metrics`` joined by ' / ' (PSNR to 2 decimals, an SSIM to 3; faces per
    cell in the column header where not all)."""
    table = scores.assign(cell=[cell(row, metrics) for _, row in scores.iterrows()])
    wide = table.pivot(index="condition", columns="model", values="cell")
    order = list(dict.fromkeys(scores["condition"]))
    names = list(dict.fromkeys(scores["model"]))
    faces = scores.groupby("model")["faces"].max()
    noisy = scores.drop_duplicates("condition").set_index("condition")
    header = ["noise", "noisy input", *(f"{name} ({faces[name]})" for name in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "--:|" * (len(header) - 1)]
    for condition in order:
        cells = [wide.loc[condition].get(name, np.nan) for name in names]
        cells = ["-" if isinstance(c, float) else c for c in cells]
        noisy_input = cell(noisy.loc[condition], tuple(f"noisy_{metric}" for metric in metrics))
        lines.append(f"| {condition} | {noisy_input} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cell(row: pd.Series, metrics: tuple[str, ...]) -> str:
    return " / ".join(f"{row[metric]:.2f}" if metric.endswith("psnr") else f"{row[metric]:.3f}" for metric in metrics)


def model_card_section(quality: Quality, command: str, faces_total: int) -> str:
    """The generated part of the model card, between its markers."""
    uses = "; ".join(f"`{name}` for {', '.join(KIND_NAMES[k] for k in kinds)}" for name, kinds in quality.kinds.items())
    return "\n".join([
        f"Measured by `{command}` on the PrivateTest hold-out ({faces_total} faces not in Training; "
        "mean per-image PSNR in dB and SSIM on [0, 1]; NLM and BM3D on the first faces only, as the headers say). "
        f"Trained for: {uses}. Each condition is judged with the most specialised model trained for its kind "
        "(the default, most general model where none is).",
        "", "### Against the bar", "", margins_markdown(quality.margins),
        *(["", "### Against the model it replaced (PSNR, dB)", "", replacement_markdown(quality.replaced)] if len(quality.replaced) else []),
        "", "### Every filter at every condition (PSNR / SSIM; faces in the header)", "", scores_markdown(quality.scores),
    ])


START, END = "<!-- quality:start -->", "<!-- quality:end -->"
NUMBER = re.compile(r"[-+]?\d+\.\d+")


def _check_markers(text: str) -> None:
    if START not in text or END not in text or text.index(START) > text.index(END):
        raise InputError(f"the model card needs the markers {START} and {END} (in that order) around its quality section")


def replace_between_markers(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section``; a clear error if a marker is missing."""
    _check_markers(text)
    head, rest = text.split(START, 1)
    return f"{head}{START}\n{section}\n{END}{rest.split(END, 1)[1]}"


def section_between_markers(text: str) -> str:
    _check_markers(text)
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def card_difference(card: str, measured: str) -> str:
    """'' when the two texts agree: the same words, and every number within one unit of its last printed digit
    (another CPU may round a mean the other way); else what differs first, in one line."""
    if NUMBER.sub("#", card) != NUMBER.sub("#", measured):
        return "the tables' text differs (other rows, names or face counts)"
    for old, new in zip(NUMBER.findall(card), NUMBER.findall(measured)):
        last_digit = 10.0 ** -len(old.split(".")[1])
        if abs(float(old) - float(new)) > 1.01 * last_digit:
            return f"the card says {old} where this run measured {new}"
    return ""
