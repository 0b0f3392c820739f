"""Misaligned faces: the PSNR/SSIM a denoiser loses when a face is shifted, rotated or scaled a little."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from denoise_core.errors import InputError
from denoise_core.evaluate import Denoiser, score_images
from denoise_core.holdout import Holdout
from denoise_core.noise import NoiseSpec, corrupt, make_generator
from results.analysis.common import Finding, floats, primary_name, restore, save_figure
from results.analysis.evidence import Evidence, measured, overall, verdict_word
from results.analysis.face_map import SIDE


MISALIGN_DB = 0.1  # PSNR lost to misalignment (beyond the input's own change) that counts as "harder"
EXPECT_MISALIGNMENT = "misaligned faces are harder"


@dataclass(frozen=True)
class Transform:
    """A small misalignment of a face: content moved by ``shift`` (rows, columns) px, turned by ``angle``
    degrees and enlarged by ``scale`` about the image centre."""

    kind: str  # "aligned", "shift", "rotation" or "scale"
    magnitude: float  # pixels, degrees, or |1 - scale factor|
    label: str
    shift: tuple[float, float] = (0.0, 0.0)
    angle: float = 0.0
    scale: float = 1.0


def misalignments(shifts: Sequence[int] = (2, 4), angles: Sequence[float] = (5, 10), scales: Sequence[float] = (0.9, 1.1)) -> list[Transform]:
    """The aligned face plus shifts (each size in 4 directions), rotations (both ways) and scalings."""
    transforms = [Transform("aligned", 0.0, "aligned")]
    for size in shifts:
        for dx, dy in ((size, 0), (-size, 0), (0, size), (0, -size)):
            transforms.append(Transform("shift", float(size), f"shift {dx:+d},{dy:+d} px", shift=(float(dy), float(dx))))
    for angle in angles:
        for signed in (angle, -angle):
            transforms.append(Transform("rotation", float(abs(angle)), f"rotate {signed:+g} deg", angle=float(signed)))
    for factor in scales:
        transforms.append(Transform("scale", round(abs(1.0 - factor), 6), f"scale x{factor:g}", scale=float(factor)))
    return transforms


def cosine_weights(positions: np.ndarray, n: int = SIDE) -> np.ndarray:
    """Interpolation weights (*positions.shape, n) of n samples for values at fractional positions, from the
    samples' cosine (DCT-II) series: exact at whole positions, mirrored beyond the ends like scipy's
    'reflect', and with no smoothing in between (a linear interpolator blurs, see ``warp``)."""
    k = np.arange(n)
    at_positions = np.cos(np.pi * np.multiply.outer(np.asarray(positions, dtype=np.float64) + 0.5, k) / n) * np.where(k == 0, 1.0, 2.0) / n
    return at_positions @ np.cos(np.pi * np.outer(k, np.arange(n) + 0.5) / n)


def warp(images: np.ndarray, transform: Transform) -> np.ndarray:
    """Float faces (N, 48, 48) moved by the transform, quantised to the 256 levels a stored face has.

    Resampling is the cosine-series interpolation of ``cosine_weights``: shift and scale are one matrix per
    axis, rotation three shears (Unser et al. 1995), so whole-pixel shifts are exact and nothing is blurred.
    Bilinear resampling (``grid_sample``) would halve a face's fine detail at a 10 degree rotation, and a
    blurred face is easier to denoise, which made rotated faces look 2 dB easier than aligned ones.
    """
    faces = images.astype(np.float64)
    grid = np.arange(SIDE, dtype=np.float64)
    centre = (SIDE - 1) / 2
    if transform.scale != 1.0 or transform.shift != (0.0, 0.0):
        rows = cosine_weights(centre + (grid - centre) / transform.scale - transform.shift[0])
        cols = cosine_weights(centre + (grid - centre) / transform.scale - transform.shift[1])
        faces = rows @ faces @ cols.T
    if transform.angle:
        along = np.tan(math.radians(transform.angle) / 2)
        across = -math.sin(math.radians(transform.angle))
        row_shear = cosine_weights(grid[None, :] - along * (grid[:, None] - centre))  # (row, column, source column)
        col_shear = cosine_weights(grid[None, :] - across * (grid[:, None] - centre))  # (column, row, source row)
        faces = np.einsum("yxi,nyi->nyx", row_shear, faces)
        faces = np.einsum("xyi,nix->nyx", col_shear, faces)
        faces = np.einsum("yxi,nyi->nyx", row_shear, faces)
    return (np.clip(np.round(faces * 255.0), 0.0, 255.0) / 255.0).astype(np.float32)


def misalignment(denoisers: Mapping[str, Denoiser], holdout: Holdout, condition: str = "sp:0.3", transforms: Sequence[Transform] | None = None,
                 seed: int = 2013, out_dir: Path | None = None, replicates: Sequence[Denoiser] = ()) -> Finding:
    """Drop in PSNR/SSIM when the clean test faces are shifted, rotated or scaled a little before corruption.

    Faces are moved by ``warp`` (no blur), and every version of a face gets the same seeded noise draw, so
    the comparison with the aligned face is paired. Moving a face changes its pixel values a little (mirrored
    borders), which changes the noisy input's own PSNR, so the table has that drop too. Checks "misaligned
    faces are harder" per face on the first denoiser (with ``replicates``, its other seeds): its PSNR drop beyond
    its noisy input's, averaged over the transforms, is above ``MISALIGN_DB``; per kind of transform at its largest
    size in the evidence too.
    """
    condition = str(NoiseSpec.parse(condition))
    transforms = list(transforms or misalignments())
    if transforms[0].kind != "aligned":
        transforms.insert(0, misalignments((), (), ())[0])
    if len(transforms) < 2:
        raise InputError("no misalignment to analyse: give at least one shift, angle or scale")
    clean = floats(holdout.clean)
    primary = primary_name(denoisers)
    rows, per_face = [], []
    for transform in transforms:
        target = warp(clean, transform)
        noisy = corrupt(torch.from_numpy(target), condition, make_generator(seed)).mul(255.0).round().div(255.0).numpy()
        noisy_psnr = score_images(noisy, target)[0]
        for name, denoiser in denoisers.items():
            restored = restore(denoiser, noisy)
            psnr, ssim = score_images(restored, target)
            rows.append({"denoiser": name, "transform": transform.label, "kind": transform.kind, "magnitude": transform.magnitude,
                         "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)), "noisy_psnr": float(np.mean(noisy_psnr))})
            if name == primary:
                seeds = [psnr] + [score_images(restore(replicate, noisy), target)[0] for replicate in replicates]
                per_face.append(np.stack(seeds) - noisy_psnr)  # (seeds, faces): the denoiser's PSNR beyond its input's
    table = drops(pd.DataFrame(rows))
    evidence = misalignment_evidence(np.stack(per_face), transforms, condition)
    moved = table[(table.denoiser == primary) & (table.kind != "aligned")]
    summary = moved.groupby(["kind", "magnitude"], sort=False)[["psnr_drop", "ssim_drop"]].mean()
    parts = []
    for kind, noun, unit in (("shift", "shifted", " px"), ("rotation", "rotated", "°"), ("scale", "scaled by", "")):
        if kind in summary.index.get_level_values(0):
            worst = summary.loc[kind].index.max()
            drop = summary.loc[(kind, worst)]
            amount = f"{1 - worst:g}/{1 + worst:g}" if kind == "scale" else f"{worst:g}{unit}"
            parts.append(f"{-drop.psnr_drop:+.2f} dB (SSIM {-drop.ssim_drop:+.3f}) {noun} {amount}")
    net = evidence[0]
    aligned = table[(table.kind == "aligned") & (table.denoiser == primary)].iloc[0]
    sentence = (f"With {condition} noise, {primary}'s PSNR changes by {', '.join(parts)}, from {aligned.psnr:.2f} dB on aligned faces, and "
                f"beyond the {-moved.noisy_psnr_drop.mean():+.2f} dB change of its noisy input itself it drops by {net.number()} per face on average "
                f"({net.size()}, 95% interval), so misaligned faces are harder: {verdict_word(net.supported, True)}.")
    figure = _plot_misalignment(table, out_dir) if out_dir is not None else None
    return Finding("misalignment", "Misaligned faces", sentence, EXPECT_MISALIGNMENT, overall(evidence), table, figure, tuple(evidence))


def drops(table: pd.DataFrame) -> pd.DataFrame:
    """Each row's drop from its denoiser's aligned row: PSNR, SSIM, the noisy input's PSNR, and PSNR beyond the input's."""
    base = table[table.kind == "aligned"].set_index("denoiser").loc[table.denoiser]
    table["psnr_drop"] = base.psnr.to_numpy() - table.psnr
    table["ssim_drop"] = base.ssim.to_numpy() - table.ssim
    table["noisy_psnr_drop"] = base.noisy_psnr.to_numpy() - table.noisy_psnr
    table["net_psnr_drop"] = table.psnr_drop - table.noisy_psnr_drop
    return table


def misalignment_evidence(beyond: np.ndarray, transforms: Sequence[Transform], condition: str) -> list[Evidence]:
    """From (transforms, seeds, faces) PSNR beyond the input's: the net drop over every transform (headline), then per kind at its largest size."""
    net = beyond[:1] - beyond[1:]  # aligned minus each moved version
    evidence = [measured(net.mean(axis=0), "PSNR drop beyond the noisy input's, over every shift, rotation and scaling", MISALIGN_DB, True, unit="dB",
                         condition=condition)]
    moved = transforms[1:]
    for kind in dict.fromkeys(t.kind for t in moved):
        largest = max(t.magnitude for t in moved if t.kind == kind)
        chosen = [i for i, t in enumerate(moved) if t.kind == kind and t.magnitude == largest]
        size = {"shift": f"shifts by {largest:g} px", "rotation": f"rotations by ±{largest:g}°", "scale": f"scalings by ±{largest:g}"}.get(kind, kind)
        evidence.append(measured(net[chosen].mean(axis=0), f"PSNR drop beyond the input's, {size}", MISALIGN_DB, True, unit="dB",
                                 condition=condition, headline=False))
    return evidence


def _plot_misalignment(table: pd.DataFrame, out_dir: Path) -> str:
    summary = table[table.kind != "aligned"].groupby(["kind", "magnitude", "denoiser"], sort=False).psnr_drop.mean().unstack("denoiser")
    fig = Figure(figsize=(6.5, 3.6))
    axis = fig.subplots()
    width = 0.8 / max(summary.shape[1], 1)
    for offset, name in enumerate(summary.columns):
        axis.bar(np.arange(len(summary)) + offset * width, summary[name], width=width, label=name)
    axis.set_xticks(np.arange(len(summary)) + 0.4 - width / 2, [f"{kind} {magnitude:g}" for kind, magnitude in summary.index], fontsize=7)
    axis.axhline(0.0, color="gray", linewidth=0.8)
    axis.set_ylabel("PSNR drop vs aligned (dB)")
    axis.legend(fontsize=7)
    return save_figure(fig, out_dir, "misalignment.png")

