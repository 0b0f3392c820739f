"""``ReportOptions``: how much of the hold-out a report or a comparison scores, and how.

One schema for ``python -m results.report``, ``python -m results.compare`` and a study's ``report_options``:
the flags are generated from it and every value is checked once, here, by the settings pipeline
(``denoise_core.settings``). It imports nothing heavy, so the study can check its report settings before Ray starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from denoise_core.errors import InputError
from denoise_core.noise import parse_alternatives
from denoise_core.settings import build

# BM3D costs ~0.5 s per face and call: a thorough run (the model card, the full preset's report) runs it where it is meant to be used
# (Gaussian noise, also saved as JPEG, and a mixture), at the clean point, and at two impulse densities to show how it fares there;
# a first report (the local preset's, the default) only at sigma 25, where it is the Gaussian reference.
BM3D_CONDITIONS = ("none", "sp:0.1", "sp:0.5", "gauss:10", "gauss:25", "gauss:50", "sp:0.2+gauss:20", "gauss:10+jpeg:95", "gauss:25+jpeg:75")
REPORT_BM3D_CONDITIONS = ("gauss:25",)


@dataclass(frozen=True)
class ReportOptions:
    """The defaults are a first report's sizes, the local preset's: its cold build costs a third of that study's trials on
    2 cores (``bench/report.py --study-budget``). A thorough report asks for more (the full preset's ``report_options``)."""

    top: int = 2  # learned models on the curves and grids (best by the validation metric)
    faces: int | None = 300  # hold-out faces for every learned model and the fast baselines (None or 0: all ~3,300)
    bm3d_faces: int = 4  # hold-out faces for the slow baselines, NLM and BM3D
    tune_faces: int = 16  # validation faces for validating every baseline and tuning the fast ones
    bm3d_conditions: tuple[str, ...] = REPORT_BM3D_CONDITIONS  # BM3D costs ~0.5 s a face: only these conditions
    analysis: bool = True  # run results.analysis.error_analysis
    analysis_faces: int | None = 40  # hold-out faces for the error analysis (it runs every trial's model; None or 0: all)
    overwrite: bool = False
    cache: bool = True  # reuse cached baseline scores (they do not depend on the study)
    cache_dir: str | None = None  # where; None: $FACESTUDY_CACHE/baseline-scores
    device: str = "auto"
    workers: int = 0  # processes for the classical filters (0: one per CPU core, at most 8; 1: none besides this one)

    HELP: ClassVar[dict[str, str]] = {  # what each option means, for --help and the README
        "top": "learned models (best validation metric first) on the curves and grids",
        "faces": "hold-out faces for every model evaluation and the fast filters (0 or null: all ~3,300)",
        "bm3d_faces": "hold-out faces for the slow filters, NLM and BM3D",
        "tune_faces": "validation faces: every filter is validated on them (the reference filter is chosen there), the fast ones tuned on them (NLM and BM3D on at most 8)",
        "bm3d_conditions": "the conditions BM3D runs at, comma-separated (none is the clean point)",
        "analysis": "run the error analysis",
        "analysis_faces": "hold-out faces for the error analysis (0 or null: all)",
        "overwrite": "replace an existing output directory",
        "cache": "reuse the filters' cached scores",
        "cache_dir": "where the filters' scores are cached (null: $FACESTUDY_CACHE/baseline-scores)",
        "device": "device for the models: auto, cpu, cuda or cuda:N",
        "workers": "processes for the classical filters, each with one torch thread (0: one per CPU core, at most 8; 1: this process)",
    }

    def __post_init__(self) -> None:
        for name in ("faces", "analysis_faces"):  # 0 means every face, stored as None
            value = getattr(self, name)
            if value is not None and value < 0:
                raise InputError(f"{name} must be >= 0 (0: every hold-out face, as in --faces 0), got {value}")
            if value == 0:
                object.__setattr__(self, name, None)
        if self.workers < 0:
            raise InputError(f"workers must be >= 0 (0: one per CPU core), got {self.workers}")
        for name in ("top", "bm3d_faces", "tune_faces"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for condition in self.bm3d_conditions:
            if condition != "none":
                try:
                    parse_alternatives(condition)
                except InputError as error:
                    raise InputError(f"bm3d_conditions: {error}") from None


def study_options(saved: Mapping[str, Any]) -> ReportOptions:
    """A study's report options from its saved ``report_options`` (a ``SettingsError`` names a bad one)."""
    return build(ReportOptions, saved, "report_options.")
