"""Batched PSNR and SSIM in torch, equal to scikit-image's defaults on images in [0, 1], and the Gaussian-window SSIM
that published denoising tables use (``ssim_gaussian``).

scikit-image's ``structural_similarity(data_range=1.0)`` uses a 7x7 uniform window, K1=0.01, K2=0.03,
sample covariance (N / (N - 1)), and averages the SSIM map after cropping 3 pixels at each border; here
the window means come from ``avg_pool2d`` over the valid region, which is exactly that crop, so the whole
batch is one tensor expression that also runs on the GPU during training. On the CPU the same formula
runs as one compiled pass per image with running window sums (numba), because torch's pooling over many
small float64 maps is slower there than scikit-image itself.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
import torch.nn.functional as F

WINDOW = 7
GAUSS_WINDOW, GAUSS_SIGMA = 11, 1.5  # ssim_gaussian: the window of Wang et al. 2004 and BasicSR
# torch ships its own libgomp, and numba's OpenMP layer binds to it: its thread team then spins at a barrier beside
# every later torch operation, halving a one-thread training process (22 against 44 images/s, measured). numba's
# own work queue sleeps between calls; its threads are matched to torch's at each call.
numba.config.THREADING_LAYER = "workqueue"
K1, K2 = 0.01, 0.03
PSNR_CAP = 60.0  # dB; an unchanged image has infinite PSNR, and one infinite face would make every mean it enters infinite


def _as_batch(images: torch.Tensor) -> torch.Tensor:
    if images.dim() == 2:
        return images[None, None]
    if images.dim() == 3:
        return images[:, None]
    if images.dim() == 4 and images.shape[1] == 1:
        return images
    raise ValueError(f"expected images shaped (H, W), (N, H, W) or (N, 1, H, W), got {tuple(images.shape)}")


def psnr(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image PSNR in dB, shape (N,), capped at ``PSNR_CAP``: the one definition behind every reported mean
    (training validation, hold-out scores, curves). Below the cap it equals scikit-image, which gives inf for
    identical images."""
    pred, target = _as_batch(pred).double(), _as_batch(target).double()
    mse = (pred - target).pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(data_range**2 / mse)).clamp(max=PSNR_CAP)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, full: bool = False) -> torch.Tensor:
    """Local SSIM, (N, 1, H-6, W-6) over the valid region or, with ``full``, (N, 1, H, W) with
    symmetric (scipy 'reflect') padding as scikit-image's ``full=True`` map."""
    pred, target = _as_batch(pred).double(), _as_batch(target).double()
    if full:
        pred, target = _symmetric_pad(pred, WINDOW // 2), _symmetric_pad(target, WINDOW // 2)
    n = WINDOW * WINDOW
    return _ssim_formula(lambda x: F.avg_pool2d(x, WINDOW, stride=1), pred, target, n / (n - 1), data_range)


def _ssim_formula(mean, pred: torch.Tensor, target: torch.Tensor, cov_norm: float, data_range: float) -> torch.Tensor:
    """The SSIM map from local means taken by ``mean`` (a uniform or a Gaussian window over the valid region)."""
    ux, uy = mean(pred), mean(target)
    vx = cov_norm * (mean(pred * pred) - ux * ux)
    vy = cov_norm * (mean(target * target) - uy * uy)
    vxy = cov_norm * (mean(pred * target) - ux * uy)
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))


def ssim_gaussian(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image mean SSIM with the literature's window, shape (N,): an 11x11 Gaussian of sigma 1.5 and population
    covariance (Wang et al. 2004, BasicSR's ``calculate_ssim``), equal to ``skimage.metrics.structural_similarity(
    data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``. Published denoising tables use
    it; ``ssim`` (scikit-image's default 7x7 uniform window) stays the project's own metric. The map is averaged over
    the valid region, the 5-pixel crop where no window reaches past the border, so padding never enters it."""
    taps = _gaussian_taps(pred.device)
    if _compiled_path(pred, target):
        return _run_compiled(_ssim_gaussian_cpu, pred, target, data_range, taps.numpy())
    pred, target = _as_batch(pred).double(), _as_batch(target).double()
    return _ssim_formula(lambda x: F.conv2d(F.conv2d(x, taps.view(1, 1, -1, 1)), taps.view(1, 1, 1, -1)),
                         pred, target, 1.0, data_range).flatten(1).mean(dim=1)


def _gaussian_taps(device: torch.device) -> torch.Tensor:
    """scipy's normalised 1-D Gaussian of ``GAUSS_SIGMA`` over ``GAUSS_WINDOW`` taps (its truncate 3.5 gives radius 5)."""
    offsets = torch.arange(GAUSS_WINDOW, dtype=torch.float64, device=device) - GAUSS_WINDOW // 2
    taps = torch.exp(-0.5 * (offsets / GAUSS_SIGMA) ** 2)
    return taps / taps.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Per-image mean SSIM, shape (N,), equal to ``skimage.metrics.structural_similarity(data_range=1.0)``."""
    if _compiled_path(pred, target):
        return _run_compiled(_ssim_cpu, pred, target, data_range)
    return ssim_map(pred, target, data_range).flatten(1).mean(dim=1)


def _compiled_path(pred: torch.Tensor, target: torch.Tensor) -> bool:
    """CPU tensors that need no gradient go through a numba kernel; the rest (GPU, training) through torch."""
    return pred.device.type == "cpu" and target.device.type == "cpu" and not (pred.requires_grad or target.requires_grad)


def _run_compiled(kernel, pred: torch.Tensor, target: torch.Tensor, data_range: float, *extra) -> torch.Tensor:
    x = np.ascontiguousarray(_as_batch(pred)[:, 0].numpy())
    y = np.ascontiguousarray(_as_batch(target)[:, 0].numpy())
    out = np.empty(len(x), dtype=np.float64)
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    kernel(x, y, *extra, (K1 * data_range) ** 2, (K2 * data_range) ** 2, out)
    return torch.from_numpy(out)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _ssim_cpu(x, y, c1, c2, out):  # pragma: no cover - compiled
    """Mean SSIM per image: column sums of the last 7 rows, then a running 7-wide sum along the row."""
    n_images, height, width = x.shape
    area = float(WINDOW * WINDOW)
    cov_norm = area / (area - 1.0)
    count = (height - WINDOW + 1) * (width - WINDOW + 1)
    for i in numba.prange(n_images):
        cols = np.zeros((5, width))
        total = 0.0
        for r in range(height):
            for c in range(width):
                a = np.float64(x[i, r, c])
                b = np.float64(y[i, r, c])
                cols[0, c] += a
                cols[1, c] += b
                cols[2, c] += a * a
                cols[3, c] += b * b
                cols[4, c] += a * b
                if r >= WINDOW:
                    a = np.float64(x[i, r - WINDOW, c])
                    b = np.float64(y[i, r - WINDOW, c])
                    cols[0, c] -= a
                    cols[1, c] -= b
                    cols[2, c] -= a * a
                    cols[3, c] -= b * b
                    cols[4, c] -= a * b
            if r >= WINDOW - 1:
                sx = sy = sxx = syy = sxy = 0.0
                for c in range(width):
                    sx += cols[0, c]
                    sy += cols[1, c]
                    sxx += cols[2, c]
                    syy += cols[3, c]
                    sxy += cols[4, c]
                    if c >= WINDOW:
                        sx -= cols[0, c - WINDOW]
                        sy -= cols[1, c - WINDOW]
                        sxx -= cols[2, c - WINDOW]
                        syy -= cols[3, c - WINDOW]
                        sxy -= cols[4, c - WINDOW]
                    if c >= WINDOW - 1:
                        ux = sx / area
                        uy = sy / area
                        vx = cov_norm * (sxx / area - ux * ux)
                        vy = cov_norm * (syy / area - uy * uy)
                        vxy = cov_norm * (sxy / area - ux * uy)
                        total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out[i] = total / count


@numba.njit(parallel=True, cache=True, fastmath=True)
def _ssim_gaussian_cpu(x, y, taps, c1, c2, out):  # pragma: no cover - compiled
    """Mean Gaussian-window SSIM per image: the five weighted sums down the columns, then along the rows."""
    n_images, height, width = x.shape
    k = taps.shape[0]
    rows, cols = height - k + 1, width - k + 1
    for i in numba.prange(n_images):
        down = np.zeros((5, rows, width))
        for r in range(rows):
            for t in range(k):
                w = taps[t]
                for c in range(width):
                    a = np.float64(x[i, r + t, c])
                    b = np.float64(y[i, r + t, c])
                    down[0, r, c] += w * a
                    down[1, r, c] += w * b
                    down[2, r, c] += w * a * a
                    down[3, r, c] += w * b * b
                    down[4, r, c] += w * a * b
        total = 0.0
        for r in range(rows):
            for c in range(cols):
                ux = uy = sxx = syy = sxy = 0.0
                for t in range(k):
                    w = taps[t]
                    ux += w * down[0, r, c + t]
                    uy += w * down[1, r, c + t]
                    sxx += w * down[2, r, c + t]
                    syy += w * down[3, r, c + t]
                    sxy += w * down[4, r, c + t]
                vx, vy, vxy = sxx - ux * ux, syy - uy * uy, sxy - ux * uy
                total += ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        out[i] = total / (rows * cols)


def _symmetric_pad(images: torch.Tensor, pad: int) -> torch.Tensor:
    images = torch.cat([images[..., :pad].flip(-1), images, images[..., -pad:].flip(-1)], dim=-1)
    return torch.cat([images[..., :pad, :].flip(-2), images, images[..., -pad:, :].flip(-2)], dim=-2)


@torch.no_grad()
def batched_quality(pred: torch.Tensor, target: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """PSNR and SSIM per image for large sets, in chunks to bound memory."""
    psnrs, ssims = [], []
    for start in range(0, len(pred), chunk):
        psnrs.append(psnr(pred[start:start + chunk], target[start:start + chunk]))
        ssims.append(ssim(pred[start:start + chunk], target[start:start + chunk]))
    return torch.cat(psnrs), torch.cat(ssims)
