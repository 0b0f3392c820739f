"""Error analysis of denoisers on the noisy test hold-out: where on the face, on which pixels and on which
faces they fail, so a reader can see what a denoiser does to eyes, mouths and cheeks, not only its mean PSNR.

Each analysis returns one ``Finding``: a single sentence with its numbers, the table behind it, an optional
figure and, where the project's seed expected a finding, whether this data supports it (the criterion is in
each function's docstring). Denoisers come as ``{name: Denoiser}``; the first one is the one each sentence
speaks of (put the best learned model first), the tables hold them all. Errors are on the [0, 1] scale, and
the PSNR of a group of pixels comes from their MSE pooled over faces, so a group with no error reads inf.

One module per analysis: ``regions`` (error by face region), ``contrast`` (high- vs low-contrast pixels),
``oversmoothing`` (detail kept by impulse density), ``filled_in`` (faces reverting to the mean face),
``misalignment`` (shifted, rotated and scaled faces), ``worst_faces`` and ``ssim_vs_psnr``; ``suite`` runs them
all. They share ``face_map`` (the region map), ``common`` (findings, conditions, outputs, figures) and
``measures`` (pooled errors, filters, statistics). This package's names are the public ones.
"""

from results.analysis.common import Finding, default_conditions, headline_condition, impulse_conditions, impulse_density, memoised, subset
from results.analysis.contrast import contrast_split
from results.analysis.face_map import REGION_NAMES, RegionMap, face_regions
from results.analysis.filled_in import filled_in_artefacts, lowfreq_share, template_pull
from results.analysis.misalignment import Transform, cosine_weights, misalignment, misalignments, warp
from results.analysis.oversmoothing import oversmoothing
from results.analysis.regions import region_errors
from results.analysis.ssim_vs_psnr import ssim_vs_psnr
from results.analysis.suite import error_analysis
from results.analysis.worst_faces import face_attributes, worst_faces

__all__ = [
    "REGION_NAMES", "Finding", "RegionMap", "Transform", "contrast_split", "cosine_weights", "default_conditions", "error_analysis",
    "face_attributes", "face_regions", "filled_in_artefacts", "headline_condition", "impulse_conditions", "impulse_density",
    "lowfreq_share", "memoised", "misalignment", "misalignments", "oversmoothing", "region_errors", "ssim_vs_psnr", "subset",
    "template_pull", "warp", "worst_faces",
]
