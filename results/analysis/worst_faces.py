"""The worst faces at a condition: a gallery of them and what they share."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from denoise_core.evaluate import Denoiser, score_images
from denoise_core.holdout import Holdout
from denoise_core.noise import NoiseSpec
from results.analysis.common import Finding, floats, restore, save_figure, slug
from results.analysis.face_map import SIDE
from results.analysis.measures import sobel_magnitude


def face_attributes(clean: np.ndarray) -> pd.DataFrame:
    """Per face (uint8 (N, 48, 48)): mean brightness and contrast (std) on [0, 1], the share of pixels at
    exactly 0 or 255 (which an impulse detector cannot tell from noise) and the mean squared Sobel magnitude."""
    images = floats(clean)
    return pd.DataFrame({"brightness": images.mean(axis=(1, 2)), "contrast": images.std(axis=(1, 2)),
                         "saturated": ((clean == 0) | (clean == 255)).mean(axis=(1, 2)),
                         "gradient_energy": (sobel_magnitude(images) ** 2).mean(axis=(1, 2))})


def worst_faces(denoiser: Denoiser, holdout: Holdout, condition: str, out_dir: Path | None = None, k: int = 12, name: str = "denoiser") -> Finding:
    """The k lowest-PSNR faces at a condition, a gallery (noisy | denoised | clean rows) and what they share.

    The table has one row per worst face (``index`` into the hold-out, PSNR ascending) with its
    ``face_attributes``; ``table.attrs["comparison"]`` compares each attribute's mean on the worst faces
    with the rest, in standard deviations over all faces, and the sentence names the largest difference.
    """
    condition = str(NoiseSpec.parse(condition))
    clean, noisy = floats(holdout.clean), floats(holdout.noisy_for(condition))
    restored = restore(denoiser, noisy)
    psnr, ssim = score_images(restored, clean)
    k = min(k, len(clean))
    order = np.argsort(psnr, kind="stable")
    worst, rest = order[:k], order[k:]
    attributes = face_attributes(holdout.clean)
    table = pd.DataFrame({"rank": np.arange(1, k + 1), "index": worst, "psnr": psnr[worst], "ssim": ssim[worst]})
    table = pd.concat([table, attributes.iloc[worst].reset_index(drop=True)], axis=1)
    spread = attributes.std(ddof=0).replace(0.0, np.nan)
    comparison = pd.DataFrame({"worst": attributes.iloc[worst].mean(), "rest": attributes.iloc[rest].mean() if len(rest) else np.nan})
    comparison["difference_sd"] = (comparison.worst - comparison.rest) / spread
    comparison = comparison.rename_axis("attribute").reset_index()
    table.attrs["comparison"] = comparison
    ranked = comparison.assign(size=comparison.difference_sd.abs()).sort_values("size", ascending=False, na_position="last")
    lead = ranked.iloc[0]
    rest_psnr = f"{np.mean(psnr[rest]):.1f} dB for the other {len(rest)}" if len(rest) else "no other faces"
    if math.isnan(lead.difference_sd):
        traits = "no attribute can be compared with the rest"
    else:
        runner = ranked.iloc[1]
        traits = (f"they differ most in {lead.attribute} ({lead.worst:.3f} vs {lead.rest:.3f}, {lead.difference_sd:+.1f} SD), "
                  f"then {runner.attribute} ({runner.difference_sd:+.1f} SD)")
    sentence = f"At {condition}, the {k} worst faces for {name} average {np.mean(psnr[worst]):.1f} dB against {rest_psnr}, and {traits}."
    figure = _plot_gallery(noisy[worst], restored[worst], clean[worst], psnr[worst], condition, name, out_dir) if out_dir is not None else None
    return Finding("worst_faces", f"Worst faces at {condition}", sentence, None, None, table, figure)


def _plot_gallery(noisy: np.ndarray, restored: np.ndarray, clean: np.ndarray, psnr: np.ndarray, condition: str, name: str, out_dir: Path) -> str:
    """One mosaic image (rows noisy | denoised | clean), far quicker to draw than a grid of axes."""
    gap, count = 2, len(clean)
    mosaic = np.ones((3 * SIDE + 2 * gap, count * SIDE + (count - 1) * gap), dtype=np.float32)
    for row, images in enumerate((noisy, restored, clean)):
        top = row * (SIDE + gap)
        strip = np.concatenate([np.pad(np.clip(image, 0, 1), ((0, 0), (0, gap)), constant_values=1.0) for image in images], axis=1)
        mosaic[top:top + SIDE] = strip[:, :mosaic.shape[1]]
    fig = Figure(figsize=(max(0.75 * count, 3.0) + 0.9, 2.9))
    axis = fig.subplots()
    axis.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axis.set_xticks([column * (SIDE + gap) + SIDE / 2 for column in range(count)], [f"{value:.1f}" for value in psnr], fontsize=6)
    axis.set_yticks([row * (SIDE + gap) + SIDE / 2 for row in range(3)], ["noisy", "denoised", "clean"], fontsize=7)
    axis.set_title(f"{count} worst faces for {name} at {condition} (PSNR dB)", fontsize=8)
    return save_figure(fig, out_dir, f"worst_faces_{slug(condition)}.png")

