"""Error analysis of denoisers on the noisy test hold-out: where on the face, on which pixels and on which
faces they fail, so a reader can see what a denoiser does to eyes, mouths and cheeks, not only its mean PSNR.

Each analysis returns one ``Finding``: a single sentence with its numbers, the table behind it, an optional
figure and, where the project's seed expected a finding, its evidence: each number with a 95% interval over faces
(and over seeds, given ``replicates``: the first denoiser trained again from other seeds) and a verdict never
stronger than that interval (``evidence``; the criterion is in each function's docstring). Denoisers come as ``{name: Denoiser}``; the first one is the one each sentence
speaks of (put the best learned model first), the tables hold them all. Errors are on the [0, 1] scale, and
the PSNR of a group of pixels comes from their MSE pooled over faces, so a group with no error reads inf.

One module per analysis: ``regions`` (error by face region), ``contrast`` (high- vs low-contrast pixels),
``oversmoothing`` (detail kept by impulse density), ``filled_in`` (faces reverting to the mean face),
``misalignment`` (shifted, rotated and scaled faces), ``worst_faces`` and ``ssim_vs_psnr``; ``suite`` runs them
all. They share ``face_map`` (the region map), ``common`` (findings, conditions, outputs, figures), ``evidence``
(numbers with intervals and verdicts) and ``measures`` (pooled and per-face errors, filters, correlations). This package's names are the public ones.
"""

from results.analysis.common import Finding, default_conditions, headline_condition, impulse_conditions, impulse_density, memoised, subset
from results.analysis.contrast import contrast_split
from results.analysis.evidence import METHOD, Evidence, evidence_table, expected_findings, headline_text, measured, overall
from results.analysis.face_map import REGION_NAMES, RegionMap, face_regions
from results.analysis.filled_in import LevelModels, filled_in_artefacts, filled_in_experiments, lowfreq_share, template_pull
from results.analysis.misalignment import Transform, cosine_weights, misalignment, misalignments, warp
from results.analysis.oversmoothing import oversmoothing
from results.analysis.regions import region_errors
from results.analysis.ssim_vs_psnr import ssim_vs_psnr
from results.analysis.suite import error_analysis
from results.analysis.worst_faces import face_attributes, worst_faces

__all__ = [
    "METHOD", "REGION_NAMES", "Evidence", "Finding", "LevelModels", "RegionMap", "Transform", "contrast_split", "cosine_weights", "default_conditions",
    "error_analysis", "evidence_table", "expected_findings", "face_attributes", "face_regions", "filled_in_artefacts", "filled_in_experiments", "headline_condition",
    "headline_text", "impulse_conditions", "impulse_density", "lowfreq_share", "measured", "memoised", "misalignment", "misalignments", "overall",
    "oversmoothing", "region_errors", "ssim_vs_psnr", "subset", "template_pull", "warp", "worst_faces",
]
