"""Every analysis in one call, as the report runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from denoise_core.evaluate import Denoiser
from denoise_core.holdout import Holdout
from results.analysis.common import Finding, canonical, default_conditions, headline_condition, impulse_conditions, memoised, primary_name, subset
from results.analysis.contrast import contrast_split
from results.analysis.filled_in import filled_in_artefacts
from results.analysis.misalignment import misalignment
from results.analysis.oversmoothing import oversmoothing
from results.analysis.regions import region_errors
from results.analysis.ssim_vs_psnr import ssim_vs_psnr
from results.analysis.worst_faces import worst_faces


def error_analysis(denoisers: Mapping[str, Denoiser], holdout: Holdout, out_dir: Path, trial_models: Sequence[tuple[Mapping, Denoiser]] | None = None,
                   conditions: Sequence[str] | None = None, faces: int | None = None) -> list[Finding]:
    """Every analysis above on the first ``faces`` hold-out faces, each denoiser run once per noisy slab.

    ``conditions`` (default: ``default_conditions``) drive the region, contrast and SSIM analyses, their pure
    impulse ones the over-smoothing curve (default: every impulse density of the hold-out); the worst faces
    are the first denoiser's at ``headline_condition``; filled-in artefacts run only with ``trial_models``.
    """
    out_dir = Path(out_dir)
    holdout = subset(holdout, faces)
    cached = {name: memoised(denoiser) for name, denoiser in denoisers.items()}
    chosen = canonical(conditions or default_conditions(holdout))
    smoothing = impulse_conditions(chosen) if conditions else None
    primary = primary_name(cached)
    findings = [region_errors(cached, holdout, chosen, out_dir), contrast_split(cached, holdout, chosen, out_dir),
                oversmoothing(cached, holdout, smoothing or None, out_dir)]
    if trial_models:
        findings.append(filled_in_artefacts(trial_models, holdout, out_dir=out_dir))
    findings.append(misalignment(cached, holdout, out_dir=out_dir))
    findings.append(worst_faces(cached[primary], holdout, headline_condition(chosen), out_dir, name=primary))
    findings.append(ssim_vs_psnr(cached, holdout, chosen, out_dir))
    return findings

