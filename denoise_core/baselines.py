"""Classical denoisers that the learned models are compared against.

Every baseline is ``name(noisy, **params) -> denoised``: float32 images shaped (N, H, W) in [0, 1] in,
float32 (N, H, W) in [0, 1] out. The filters run on the whole batch at once (scipy.ndimage with a
zero-size image axis, or torch gathers); only the scikit-image and bm3d wrappers loop over images,
because those libraries denoise one image at a time. Borders use scipy's 'reflect' (half-sample
symmetric) padding unless a function says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from denoise_core.metrics import psnr

Baseline = Callable[..., np.ndarray]


def _as_batch(noisy: np.ndarray) -> np.ndarray:
    images = np.asarray(noisy, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"expected images shaped (N, H, W), got {images.shape}")
    return images


def _finish(images: np.ndarray) -> np.ndarray:
    return np.clip(images, 0.0, 1.0).astype(np.float32, copy=False)


def _windows(max_window: int) -> range:
    if max_window < 3 or max_window % 2 == 0:
        raise ValueError(f"max_window must be an odd number >= 3, got {max_window}")
    return range(3, max_window + 1, 2)


def median(noisy: np.ndarray, size: int = 3) -> np.ndarray:
    """Plain size x size median: the textbook impulse filter, which also smooths every clean pixel."""
    return _finish(ndimage.median_filter(_as_batch(noisy), size=(1, size, size), mode="reflect"))


def adaptive_median(noisy: np.ndarray, max_window: int = 7) -> np.ndarray:
    """Gonzalez & Woods adaptive median: grow the window (3, 5, ...) until its median is not an extreme,
    then keep the pixel unless it is itself an extreme of the window; at the largest window output its median.

    Min, median and max of the smallest window are computed for the whole batch; each larger window only for the
    pixels still undecided (a few percent of a face but at high impulse densities), gathered where they are few.
    """
    images = _as_batch(noisy)
    flat = images.reshape(-1)
    out = np.empty_like(flat)
    todo = np.arange(flat.size)
    for size in _windows(max_window):
        low, middle, high = _window_order_statistics(images, todo, size)
        valid = (low < middle) & (middle < high)
        value = flat[todo]
        out[todo[valid]] = np.where((low < value) & (value < high), value, middle)[valid]
        todo, last = todo[~valid], middle[~valid]
        if len(todo) == 0:
            break
    out[todo] = last  # no valid window at all: the largest window's median
    return _finish(out.reshape(images.shape))


def _window_order_statistics(images: np.ndarray, flat_index: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum, median and maximum of the size x size window (scipy 'reflect' border) at each listed pixel: filtered
    over the whole batch where most pixels are listed, else gathered at the listed ones only (the same values)."""
    if len(flat_index) > images.size // 2:
        footprint = (1, size, size)
        return tuple(f(images, size=footprint, mode="reflect").reshape(-1)[flat_index]
                     for f in (ndimage.minimum_filter, ndimage.median_filter, ndimage.maximum_filter))
    radius, count = size // 2, size * size
    padded = np.pad(images, ((0, 0), (radius, radius), (radius, radius)), mode="symmetric").reshape(-1)  # = scipy's 'reflect'
    height, width = images.shape[1:]
    image, rest = flat_index // (height * width), flat_index % (height * width)
    corner = (image * (height + 2 * radius) + rest // width) * (width + 2 * radius) + rest % width
    offsets = (np.arange(size)[:, None] * (width + 2 * radius) + np.arange(size)[None, :]).reshape(-1)
    low, middle, high = (np.empty(len(flat_index), np.float32) for _ in range(3))
    block = 100_000
    for start in range(0, len(flat_index), block):
        ordered = np.partition(padded[corner[start:start + block, None] + offsets[None, :]], (0, count // 2, count - 1), axis=1)
        low[start:start + block], middle[start:start + block], high[start:start + block] = ordered[:, 0], ordered[:, count // 2], ordered[:, -1]
    return low, middle, high


def switching_median(noisy: np.ndarray, max_window: int = 7) -> np.ndarray:
    """Decision-based impulse filter: only pixels that are exactly 0 or 1 are treated as impulses, and each is
    replaced by the median of the non-impulse pixels in the smallest window (3, 5, ...) holding any.

    Other pixels come back unchanged, which is why this beats every plain filter on salt-and-pepper noise.
    Windows are cut off at the image border (no padding values enter a median). An impulse with no clean
    pixel even in the largest window takes the mean of its already-restored 3x3 neighbours, filled inward
    in rounds; an image made only of impulses gets its largest-window median. A clean pixel that is truly
    0 or 1 is indistinguishable from an impulse and gets replaced too.
    """
    images = torch.from_numpy(_as_batch(noisy).copy())
    sizes = list(_windows(max_window))
    impulse = (images <= 0.0) | (images >= 1.0)
    out = images.clone()
    todo = impulse.flatten().nonzero().squeeze(1)
    clean_only = images.masked_fill(impulse, float("nan"))
    for size in sizes:
        if len(todo) == 0:
            break
        values = _masked_window_median(clean_only, todo, size)
        found = ~torch.isnan(values)
        out.view(-1)[todo[found]] = values[found]
        todo = todo[~found]
    if len(todo):
        out = _fill_inward(out, todo, images, sizes[-1])
    return _finish(out.numpy())


def _window_values(images: torch.Tensor, flat_index: torch.Tensor, size: int) -> torch.Tensor:
    """The size x size neighbourhood of each listed pixel, (len(flat_index), size*size), NaN outside the image.

    Like ``F.unfold`` on the NaN-padded batch, but gathered only at the listed pixels, so later (larger)
    windows cost nothing for the pixels already restored.
    """
    count, height, width = images.shape
    radius = size // 2
    padded = F.pad(images, (radius, radius, radius, radius), value=float("nan")).reshape(-1)
    padded_height, padded_width = height + 2 * radius, width + 2 * radius
    image, rest = flat_index // (height * width), flat_index % (height * width)
    row, col = rest // width, rest % width
    corner = image * padded_height * padded_width + row * padded_width + col
    steps = torch.arange(size)
    offsets = (steps[:, None] * padded_width + steps[None, :]).reshape(-1)
    return padded[corner[:, None] + offsets[None, :]]


def _masked_window_median(images: torch.Tensor, flat_index: torch.Tensor, size: int) -> torch.Tensor:
    """Median of the non-NaN values around each listed pixel (mean of the two middle ones for an even
    count, as ``np.nanmedian``); NaN where the window holds none."""
    values = _window_values(images, flat_index, size)
    ordered = values.sort(dim=1).values  # NaN sorts last
    count = (~torch.isnan(values)).sum(dim=1, keepdim=True)
    low = ordered.gather(1, ((count - 1).clamp(min=0)) // 2)
    high = ordered.gather(1, (count // 2).clamp(max=values.shape[1] - 1))
    return ((low + high) / 2).squeeze(1).masked_fill(count.squeeze(1) == 0, float("nan"))


def _fill_inward(out: torch.Tensor, todo: torch.Tensor, images: torch.Tensor, max_window: int) -> torch.Tensor:
    """Give impulses with no clean pixel nearby the mean of their restored 3x3 neighbours, round by round."""
    out = out.clone()
    out.view(-1)[todo] = float("nan")
    while len(todo):
        values = _window_values(out, todo, 3).nanmean(dim=1)
        found = ~torch.isnan(values)
        if not found.any():  # the whole image is impulses: nothing to borrow from
            out.view(-1)[todo] = _masked_window_median(images, todo, max_window)
            break
        out.view(-1)[todo[found]] = values[found]
        todo = todo[~found]
    return out


def adaptive_weighted_mean(noisy: np.ndarray, max_half_width: int = 39) -> np.ndarray:
    """Adaptive weighted mean filter (AWMF) of P. Zhang and F. Li, "A New Adaptive Weighted Mean Filter for
    Removing Salt-and-Pepper Noise", IEEE Signal Processing Letters 21(10):1280-1283, 2014: one of the strongest
    decision-based impulse filters, and unlike the switching median it does not assume impulses are exactly 0 or 1.

    Each pixel grows its window half-width w = 1, 2, ... until the window's minimum and maximum equal those of
    the next larger window and some window value lies strictly between them. A pixel strictly between its
    window's minimum and maximum is kept; any other is replaced by the mean of the window values strictly between
    them. A pixel that reaches ``max_half_width`` (the paper's w_max) is judged in that window; where the paper
    would use its -1 sentinel (no value between the extremes) the pixel is kept. Windows are cut off at the
    border. Computed for the whole batch per window size; windows are gathered only for the pixels to replace.
    """
    if max_half_width < 1:
        raise ValueError(f"max_half_width must be >= 1, got {max_half_width}")
    images = _as_batch(noisy)
    out = np.empty_like(images)
    for start in range(0, len(images), 256):
        out[start:start + 256] = _adaptive_weighted_mean_chunk(images[start:start + 256], max_half_width)
    return _finish(out)


def _adaptive_weighted_mean_chunk(images: np.ndarray, max_half_width: int) -> np.ndarray:
    pixels = torch.from_numpy(images.copy())
    flat = pixels.view(-1)
    out = flat.clone()
    active = torch.arange(flat.numel())  # pixels whose window is still growing
    extremes = _WindowExtremes.of(images)
    low, high = extremes.at(active)
    for half_width in range(1, max_half_width + 1):
        last = half_width == max_half_width
        if last:
            stopping = torch.ones(len(active), dtype=torch.bool)
        else:
            extremes = extremes.grown()
            next_low, next_high = extremes.at(active)
            stopping = (low == next_low) & (high == next_high)
        value = flat[active]
        inside = (low < value) & (value < high)
        done = stopping & inside
        at = (stopping & ~inside).nonzero().squeeze(1)
        means = _between_extremes_mean(pixels, active[at], 2 * half_width + 1)
        found = ~torch.isnan(means)
        out[active[at[found]]] = means[found]
        done[at[found]] = True
        growing = ~done
        active = active[growing]
        if last or len(active) == 0:
            break
        low, high = next_low[growing], next_high[growing]
        extremes = extremes.only(active)
    return out.view(images.shape).numpy()


@dataclass(frozen=True)
class _WindowExtremes:
    """Minimum and maximum of every pixel's square window, cut off at the image border, for the images ``rows`` of a
    batch. A window one pixel wider is the 3x3 extreme of these (the same values as filtering the images with the
    wider window, at a fraction of the cost), and only the images still holding a growing pixel are kept."""

    rows: np.ndarray  # batch indices of the images held, ascending
    low: np.ndarray  # (len(rows), H, W)
    high: np.ndarray

    @staticmethod
    def of(images: np.ndarray) -> _WindowExtremes:
        """The 3x3 windows (half-width 1) of every image."""
        return _WindowExtremes(np.arange(len(images)), *_extremes_3x3(images, images))

    def grown(self) -> _WindowExtremes:
        return _WindowExtremes(self.rows, *_extremes_3x3(self.low, self.high))

    def at(self, flat_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        plane = self.low.shape[1] * self.low.shape[2]
        local = torch.from_numpy(np.searchsorted(self.rows, (flat_index // plane).numpy())) * plane + flat_index % plane
        return torch.from_numpy(self.low).view(-1)[local], torch.from_numpy(self.high).view(-1)[local]

    def only(self, flat_index: torch.Tensor) -> _WindowExtremes:
        plane = self.low.shape[1] * self.low.shape[2]
        keep = np.searchsorted(self.rows, np.unique((flat_index // plane).numpy()))
        return _WindowExtremes(self.rows[keep], self.low[keep], self.high[keep])


def _extremes_3x3(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (ndimage.minimum_filter(low, size=(1, 3, 3), mode="constant", cval=np.inf),
            ndimage.maximum_filter(high, size=(1, 3, 3), mode="constant", cval=-np.inf))


def _between_extremes_mean(images: torch.Tensor, flat_index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of the window values strictly between the window's minimum and maximum; NaN where there are none."""
    means = torch.empty(len(flat_index))
    block = max(1, 4_000_000 // (size * size))
    for start in range(0, len(flat_index), block):
        values = _window_values(images, flat_index[start:start + block], size)
        low = values.nan_to_num(nan=float("inf")).amin(dim=1, keepdim=True)
        high = values.nan_to_num(nan=float("-inf")).amax(dim=1, keepdim=True)
        between = (values > low) & (values < high)  # NaN compares false
        count = between.sum(dim=1)
        total = torch.where(between, values, torch.zeros(())).sum(dim=1)
        means[start:start + block] = (total / count).masked_fill(count == 0, float("nan"))
    return means


def biharmonic_inpaint(noisy: np.ndarray) -> np.ndarray:
    """Known-mask inpainting: pixels exactly 0 or 1 are taken as unknown and filled by the smooth (biharmonic)
    surface through all the others, as scikit-image's ``inpaint_biharmonic`` (S. B. Damelin and N. S. Hoang, "On
    Surface Completion and Image Inpainting by Biharmonic Functions: Numerical Aspects", Int. J. Math. Math.
    Sci., 2018). Where salt-and-pepper impulses are exactly the extremes, this is the strongest classical
    estimate: clean pixels stay exact and the holes get a smooth fill, not a window median. One image at a
    time; an image with no extreme pixel, or only extreme pixels (nothing to fill from), comes back unchanged.
    """
    images = _as_batch(noisy)
    out = images.copy()
    for i, image in enumerate(images):
        unknown = (image <= 0.0) | (image >= 1.0)
        if unknown.any() and not unknown.all():
            out[i] = _inpaint_biharmonic(image.astype(np.float64), unknown)
    return _finish(out)


def _inpaint_biharmonic(image: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """scikit-image 0.26's ``inpaint_biharmonic(image, unknown)`` for one float64 image, bit for bit: the same sparse
    system (one row per unknown pixel, those within 2 pixels of the border first, each with its pixel's stencil),
    built with array operations instead of its per-pixel loop near the border, and solved by the same call."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    height, width = image.shape
    neighbours, coefficients = _biharmonic_stencils(height, width)
    flat, mask = image.reshape(-1), unknown.reshape(-1)
    edge = np.ones((height, width), dtype=bool)
    edge[2:-2, 2:-2] = False
    rows = np.concatenate([np.flatnonzero(edge & unknown), np.flatnonzero(~edge & unknown)])
    around, weights = neighbours[rows], coefficients[rows]
    inside = around >= 0
    hidden = inside & mask[np.where(inside, around, 0)]
    known = inside & ~hidden
    row_index, slot = np.nonzero(hidden)  # row by row, each row's stencil in order: the order the loop appends them
    rhs = np.zeros(len(rows))
    for k in range(around.shape[1]):  # subtracted one stencil point at a time, as the loop does
        take = known[:, k]
        rhs[take] -= weights[take, k] * flat[around[take, k]]
    matrix = sparse.csr_array((weights[row_index, slot], (row_index, around[row_index, slot])), shape=(len(rows), flat.size))[:, rows]
    solved = spsolve(matrix, rhs[:, None], use_umfpack=False, permc_spec="MMD_ATA")
    out = flat.copy()
    out[rows] = solved
    return np.clip(out, flat[~mask].min(), flat[~mask].max()).reshape(height, width)


@lru_cache(maxsize=4)
def _biharmonic_stencils(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, its stencil's pixels (flat indices, -1 padded) and weights: Laplacian of the Laplacian of a unit
    impulse (scipy's 'reflect' border) on the 5x5 window around it, cut off at the image border, nonzero entries in
    row-major order. Interior pixels share the full 13-point stencil."""
    stencils = []
    for row in range(height):
        for col in range(width):
            top, left = max(row - 2, 0), max(col - 2, 0)
            window = np.zeros((min(row + 3, height) - top, min(col + 3, width) - left))
            window[row - top, col - left] = 1
            window = ndimage.laplace(ndimage.laplace(window))
            at = np.nonzero(window)
            stencils.append(((at[0] + top) * width + at[1] + left, window[at]))
    size = max(len(index) for index, _ in stencils)
    neighbours = np.full((height * width, size), -1, dtype=np.intp)
    coefficients = np.zeros((height * width, size))
    for pixel, (index, weight) in enumerate(stencils):
        neighbours[pixel, :len(index)], coefficients[pixel, :len(index)] = index, weight
    return neighbours, coefficients


def gaussian_blur(noisy: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Isotropic Gaussian smoothing: the linear baseline, optimal only for smooth images in white noise."""
    return _finish(ndimage.gaussian_filter(_as_batch(noisy), sigma=(0.0, sigma, sigma), mode="reflect"))


def total_variation(noisy: np.ndarray, weight: float = 0.1) -> np.ndarray:
    """Chambolle total-variation denoising: keeps edges, flattens texture into cartoon patches."""
    from skimage.restoration import denoise_tv_chambolle

    images = _as_batch(noisy)
    if len(images) == 0:
        return images.copy()
    return _finish(denoise_tv_chambolle(images, weight=weight, channel_axis=0))  # each image on its own


def estimate_noise_sigma(noisy: np.ndarray) -> np.ndarray:
    """Per-image Gaussian noise standard deviation (0..1 scale), shape (N,), by Immerkaer's Laplacian-difference
    estimator: one batched convolution, and no PyWavelets dependency (unlike skimage's ``estimate_sigma``)."""
    images = _as_batch(noisy).astype(np.float64)
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
    response = ndimage.correlate(images, kernel[None], mode="reflect")[:, 1:-1, 1:-1]
    height, width = images.shape[1:]
    return np.sqrt(np.pi / 2) * np.abs(response).sum(axis=(1, 2)) / (6 * (height - 2) * (width - 2))


def non_local_means(noisy: np.ndarray, h: float = 0.1, patch_size: int = 5, patch_distance: int = 6, sigma: float | None = None) -> np.ndarray:
    """Non-local means (scikit-image, fast mode), one image at a time: patches of a face are compared only
    with patches of the same face. ``sigma`` None estimates each image's noise level
    (``estimate_noise_sigma``) for the noise-variance correction of the patch distances; 0 turns it off."""
    from skimage.restoration import denoise_nl_means

    images = _as_batch(noisy)
    levels = estimate_noise_sigma(images) if sigma is None else np.full(len(images), float(sigma))
    out = np.empty_like(images)
    for i, image in enumerate(images.astype(np.float64)):
        out[i] = denoise_nl_means(image, patch_size=patch_size, patch_distance=patch_distance, h=h, fast_mode=True, sigma=float(levels[i]))
    return _finish(out)


def bm3d_denoise(noisy: np.ndarray, sigma: float = 25 / 255) -> np.ndarray:
    """BM3D (the ``bm3d`` package, its default 'np' profile), one image at a time; slow (about 0.25 s per 48x48 image),
    so use a subset. ``sigma`` is the Gaussian noise level on the 0..1 scale. On one thread: the library's default pool
    of a thread per core spins, costing twice the CPU for the same time on a face this small, and its output varies
    slightly with the thread count."""
    import bm3d

    profile = bm3d.BM3DProfile()
    profile.num_threads = 1
    images = _as_batch(noisy)
    out = np.empty_like(images)
    for i, image in enumerate(images.astype(np.float64)):
        out[i] = bm3d.bm3d(image, sigma_psd=sigma, profile=profile)
    return _finish(out)


BASELINES: dict[str, Baseline] = {
    "median3": partial(median, size=3),
    "median5": partial(median, size=5),
    "adaptive_median": adaptive_median,
    "switching_median": switching_median,
    "awmf": adaptive_weighted_mean,
    "biharmonic_inpaint": biharmonic_inpaint,
    "gaussian_blur": gaussian_blur,
    "tv": total_variation,
    "nlm": non_local_means,
    "bm3d": bm3d_denoise,
}

# The one parameter that tune_parameter searches for each baseline that has one worth tuning.
TUNABLE: dict[str, str] = {"gaussian_blur": "sigma", "tv": "weight", "nlm": "h", "bm3d": "sigma"}


def tune_parameter(name: str, noisy_val: np.ndarray, clean_val: np.ndarray, grid: list[float]) -> tuple[float, list[tuple[float, float]], torch.Tensor]:
    """Pick a baseline's main parameter on validation images by mean PSNR, so the comparison with learned
    models is not won by a badly set classical filter. Returns the best value, (value, mean PSNR) rows in grid
    order (ties go to the earlier grid value), and the per-image PSNR at the best value: the tuned filter's
    validation scores, which need not be computed again."""
    if name not in TUNABLE:
        raise ValueError(f"'{name}' has no tunable parameter; tunable baselines: {', '.join(TUNABLE)}")
    if len(grid) == 0:
        raise ValueError("grid is empty")
    clean = torch.from_numpy(_as_batch(clean_val))
    per_image = [psnr(torch.from_numpy(BASELINES[name](noisy_val, **{TUNABLE[name]: value})), clean) for value in grid]
    table = [(value, float(scores.mean())) for value, scores in zip(grid, per_image)]
    best = max(range(len(grid)), key=lambda index: table[index][1])
    return grid[best], table, per_image[best]
