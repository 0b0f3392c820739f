"""Image grids: noisy | each top model | best baseline | clean, for fixed hold-out faces at several densities,
and enlarged crops of the eyes and the mouth, where a blurred or filled-in result is easiest to see.

Faces are fixed (evenly spaced hold-out indices), so grids of different studies show the same faces. The crop
boxes are set on FER2013's mean face: eyes around rows 17-20, mouth around rows 35-39 of the aligned 48x48 face.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from denoise_core.data import to_float
from denoise_core.evaluate import score_images
from denoise_core.holdout import Holdout
from results.curves import Denoiser

GRID_CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9")
CROP_CONDITIONS = ("sp:0.3", "sp:0.7")
CROPS = {"eyes": (slice(12, 26), slice(6, 42)), "mouth": (slice(30, 44), slice(12, 36))}
GRID_FACES = 4
CROP_FACES = 2


def fixed_faces(total: int, count: int = GRID_FACES) -> np.ndarray:
    """Evenly spaced hold-out indices: deterministic, and not just the first few faces."""
    return np.unique(np.linspace(0, max(total - 1, 0), num=min(count, total)).round().astype(int))


def restore(holdout: Holdout, condition: str, indices: np.ndarray, denoisers: dict[str, Denoiser]) -> dict[str, np.ndarray]:
    """Columns of the grid in order: noisy, each denoiser, clean (float faces (len(indices), 48, 48))."""
    noisy = to_float(holdout.noisy_for(condition)[indices])
    columns = {"noisy": noisy}
    for name, denoise in denoisers.items():
        columns[name] = np.clip(denoise(noisy), 0.0, 1.0)
    columns["clean"] = to_float(holdout.clean[indices])
    return columns


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def mosaic(cells: list[list[np.ndarray]], gap: int = 3) -> tuple[np.ndarray, list[int], list[int]]:
    """Tile rows of equally sized images on white with gaps; returns the mosaic and the cells' left and top edges.

    One ``imshow`` of a mosaic draws in a fraction of the time of a grid of axes.
    """
    height, width = cells[0][0].shape
    rows, columns = len(cells), len(cells[0])
    canvas = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap), dtype=np.float32)
    lefts = [j * (width + gap) for j in range(columns)]
    tops = [i * (height + gap) for i in range(rows)]
    for i, row in enumerate(cells):
        for j, image in enumerate(row):
            canvas[tops[i]:tops[i] + height, lefts[j]:lefts[j] + width] = np.clip(image, 0.0, 1.0)
    return canvas, lefts, tops


def plot_grid(columns: dict[str, np.ndarray], path: Path, title: str, row_labels: list[str] | None = None) -> None:
    """One row per face, one column per image source, each labelled with its PSNR/SSIM against the clean face."""
    plt = _pyplot()
    clean = columns["clean"]
    names = list(columns)
    canvas, lefts, tops = mosaic([[columns[name][i] for name in names] for i in range(len(clean))], gap=12)
    scores = {name: score_images(columns[name], clean) for name in names if name != "clean"}
    left = 1.0 if row_labels else 0.15
    fig, ax = _figure(plt, canvas.shape, width=1.5 * len(names) + left + 0.15, left=left, top=0.75, bottom=0.25)
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    side = clean.shape[-1]
    for label, top in zip(row_labels or [], tops):
        ax.text(-3, top + side / 2, label.replace("+", "\n+"), ha="right", va="center", fontsize=8)
    for j, name in enumerate(names):
        ax.text(lefts[j] + side / 2, -3, wrap(name), ha="center", va="bottom", fontsize=8)
        for i, top in enumerate(tops):
            if name in scores:
                psnr, ssim = scores[name]
                ax.text(lefts[j] + side / 2, top + side + 1, f"{min(psnr[i], 99):.1f} dB / {ssim[i]:.2f}", ha="center", va="top", fontsize=6.5)
    fig.suptitle(f"{title}   (under each image: PSNR / SSIM against the clean face)", fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_crops(columns: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Eyes and mouth of each face, enlarged with nearest-neighbour pixels so that no blur is added."""
    plt = _pyplot()
    names = list(columns)
    faces = len(columns["clean"])
    height = max(box[0].stop - box[0].start for box in CROPS.values())
    width = max(box[1].stop - box[1].start for box in CROPS.values())
    labels, cells = [], []
    for face in range(faces):
        for region, box in CROPS.items():
            labels.append(f"face {face + 1}, {region}")
            cells.append([_centre(columns[name][face][box], height, width) for name in names])
    canvas, lefts, tops = mosaic(cells, gap=2)
    fig, ax = _figure(plt, canvas.shape, width=2.0 * len(names) + 1.0, left=1.0, top=0.7, bottom=0.1)
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    for j, name in enumerate(names):
        ax.text(lefts[j] + width / 2, -1, wrap(name, 22), ha="center", va="bottom", fontsize=8)
    for i, label in enumerate(labels):
        ax.text(-1.5, tops[i] + height / 2, label.replace(", ", "\n"), ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _figure(plt, shape: tuple[int, int], width: float, left: float, top: float, bottom: float):
    """A figure whose height fits the mosaic at this width, with fixed margins (inches) for the labels."""
    image_width = width - left - 0.1
    image_height = image_width * shape[0] / shape[1]
    height = image_height + top + bottom
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, image_width / width, image_height / height))
    return fig, ax


def _centre(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The crop on a white cell of the largest crop's size, centred."""
    cell = np.ones((height, width), dtype=np.float32)
    top, left = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
    cell[top:top + image.shape[0], left:left + image.shape[1]] = image
    return cell


def wrap(name: str, width: int = 16) -> str:
    """Column titles on two lines when long, so neighbouring titles do not overlap."""
    if len(name) <= width or " " not in name:
        return name
    cut = name.rfind(" ", 0, width + 1)
    cut = cut if cut > 0 else name.find(" ")
    return name[:cut] + "\n" + name[cut + 1:]
