"""Classical baselines: interface, agreement with straightforward references, and real denoising gains."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from scipy import ndimage

from denoise_core import baselines as B
from denoise_core.metrics import psnr
from denoise_core.noise import gaussian, make_generator, salt_and_pepper

HAS_BM3D = importlib.util.find_spec("bm3d") is not None


def smooth_faces(count: int, seed: int = 0, size: int = 48) -> np.ndarray:
    """Gradients plus a disc and a rectangle, slightly blurred, in [0.05, 0.95] (no pixel is exactly 0 or 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    out = np.empty((count, size, size), np.float32)
    for i in range(count):
        angle = rng.uniform(0, 2 * np.pi)
        image = 0.3 + 0.3 * (np.cos(angle) * xx + np.sin(angle) * yy)
        cy, cx, radius = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.1, 0.25)
        image += np.where((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2, rng.uniform(-0.2, 0.2), 0.0)
        tall, wide = size // 4, size // 5
        top, left = rng.integers(size // 12, size - tall - size // 12, 2)
        image[top:top + tall, left:left + wide] += rng.uniform(-0.15, 0.15)
        out[i] = ndimage.gaussian_filter(image, 1.0)
    return np.clip(out, 0.05, 0.95).astype(np.float32)


def mean_psnr(pred: np.ndarray, clean: np.ndarray) -> float:
    return float(psnr(torch.from_numpy(pred), torch.from_numpy(clean)).mean())


def with_impulses(clean: np.ndarray, density: float, seed: int = 0) -> np.ndarray:
    return salt_and_pepper(torch.from_numpy(clean), density, generator=make_generator(seed)).numpy()


def with_gaussian(clean: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    return gaussian(torch.from_numpy(clean), sigma, generator=make_generator(seed)).numpy()


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return smooth_faces(4)


@pytest.fixture(scope="module")
def impulsy(clean: np.ndarray) -> np.ndarray:
    return with_impulses(clean, 0.3)


@pytest.fixture(scope="module")
def gaussy(clean: np.ndarray) -> np.ndarray:
    return with_gaussian(clean, 25.0)


def reference_adaptive_median(image: np.ndarray, max_window: int) -> np.ndarray:
    """Gonzalez & Woods, one pixel at a time, with the same half-sample symmetric border as scipy 'reflect'."""
    radius = max_window // 2
    padded = np.pad(image, radius, mode="symmetric")
    out = np.empty_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            zxy = image[i, j]
            for size in range(3, max_window + 1, 2):
                r = size // 2
                window = padded[i + radius - r:i + radius + r + 1, j + radius - r:j + radius + r + 1]
                zmin, zmed, zmax = window.min(), np.median(window), window.max()
                if zmin < zmed < zmax:
                    out[i, j] = zxy if zmin < zxy < zmax else zmed
                    break
            else:
                out[i, j] = zmed
    return out


def reference_switching_median(image: np.ndarray, max_window: int) -> np.ndarray:
    """The switching median as specified, one pixel at a time, windows cropped at the border."""
    height, width = image.shape
    impulse = (image <= 0.0) | (image >= 1.0)
    clean_only = np.where(impulse, np.nan, image)
    out = image.copy()
    left = []
    for i, j in zip(*np.nonzero(impulse)):
        for size in range(3, max_window + 1, 2):
            r = size // 2
            window = clean_only[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            if not np.isnan(window).all():
                out[i, j] = np.nanmedian(window)
                break
        else:
            left.append((i, j))
            out[i, j] = np.nan
    while left:
        filled = {}
        for i, j in left:
            window = out[max(i - 1, 0):i + 2, max(j - 1, 0):j + 2]
            if not np.isnan(window).all():
                filled[(i, j)] = np.nanmean(window)
        if not filled:
            r = max_window // 2  # the whole image is impulses
            for i, j in left:
                out[i, j] = np.median(image[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1])
            break
        for (i, j), value in filled.items():
            out[i, j] = value
        left = [pixel for pixel in left if pixel not in filled]
    return out


FAST = ["median3", "median5", "adaptive_median", "switching_median", "gaussian_blur", "tv", "nlm"]


@pytest.mark.parametrize("name", FAST)
def test_every_baseline_returns_float32_images_of_the_input_shape_in_unit_range(name: str, impulsy: np.ndarray, gaussy: np.ndarray) -> None:
    for noisy in (impulsy, gaussy):
        out = B.BASELINES[name](noisy)
        assert out.shape == noisy.shape
        assert out.dtype == np.float32
        assert np.isfinite(out).all()
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_registry_names_are_stable() -> None:
    assert list(B.BASELINES) == ["median3", "median5", "adaptive_median", "switching_median", "gaussian_blur", "tv", "nlm", "bm3d"]


def test_baselines_reject_images_that_are_not_a_batch() -> None:
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        B.median(np.zeros((48, 48), np.float32))


@pytest.mark.parametrize("size", [3, 5])
def test_median_equals_scipy_per_image_and_a_windowed_numpy_median(size: int) -> None:
    image = np.random.default_rng(1).random((12, 12)).astype(np.float32)
    batch = np.stack([image, image[::-1]])
    out = B.median(batch, size=size)
    np.testing.assert_array_equal(out[0], ndimage.median_filter(image, size=size, mode="reflect"))
    np.testing.assert_array_equal(out[1], ndimage.median_filter(image[::-1], size=size, mode="reflect"))
    padded = np.pad(image, size // 2, mode="symmetric")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (size, size))
    np.testing.assert_array_equal(out[0], np.median(windows, axis=(2, 3)).astype(np.float32))


@pytest.mark.parametrize("max_window", [3, 5, 7])
def test_adaptive_median_equals_a_per_pixel_reference(max_window: int) -> None:
    images = smooth_faces(2, seed=3, size=12)
    images = with_impulses(images, 0.4, seed=4)
    images[1, 2:9, 3:10] = 0.5  # flat patch: min == med == max forces window growth up to the max
    images[1, 5, 6] = 1.0
    images = np.round(images * 8) / 8 if max_window == 7 else images  # many ties exercise strict inequalities
    out = B.adaptive_median(images.astype(np.float32), max_window=max_window)
    for image, got in zip(images.astype(np.float32), out):
        np.testing.assert_array_equal(got, reference_adaptive_median(image, max_window))


def test_adaptive_median_rejects_an_even_window() -> None:
    with pytest.raises(ValueError, match="odd"):
        B.adaptive_median(np.zeros((1, 8, 8), np.float32), max_window=6)


def test_switching_median_keeps_clean_pixels_exactly_and_replaces_every_impulse(clean: np.ndarray, impulsy: np.ndarray) -> None:
    out = B.switching_median(impulsy)
    impulse = (impulsy == 0.0) | (impulsy == 1.0)
    assert 0.28 < impulse.mean() < 0.32
    np.testing.assert_array_equal(out[~impulse], impulsy[~impulse])
    assert not ((out[impulse] == 0.0) | (out[impulse] == 1.0)).any()
    assert np.abs(out[impulse] - clean[impulse]).max() < 0.1


@pytest.mark.parametrize("density,max_window", [(0.3, 7), (0.7, 3), (0.95, 3), (0.95, 5)])
def test_switching_median_equals_a_per_pixel_reference_including_the_fallback(density: float, max_window: int) -> None:
    images = with_impulses(smooth_faces(2, seed=5, size=12), density, seed=6)
    out = B.switching_median(images, max_window=max_window)
    for image, got in zip(images, out):
        np.testing.assert_allclose(got, reference_switching_median(image, max_window), rtol=0, atol=1e-6)


def test_switching_median_on_an_image_of_only_impulses_returns_its_window_median() -> None:
    images = np.zeros((2, 6, 6), np.float32)
    images[1] = 1.0
    images[1, ::2, ::2] = 0.0  # checkerboard-ish of salt and pepper
    out = B.switching_median(images, max_window=3)
    np.testing.assert_array_equal(out[0], 0.0)
    assert 0.0 <= out[1].min() and out[1].max() <= 1.0 and np.isfinite(out[1]).all()


def test_switching_median_beats_median3_and_the_input_on_salt_and_pepper_0_3(clean: np.ndarray, impulsy: np.ndarray) -> None:
    noisy_db = mean_psnr(impulsy, clean)
    median3_db = mean_psnr(B.BASELINES["median3"](impulsy), clean)
    switching_db = mean_psnr(B.switching_median(impulsy), clean)
    # measured with seed 0 on these 4 images: 9.81 dB noisy, 23.57 dB median3, 52.90 dB switching median
    assert noisy_db == pytest.approx(9.81, abs=0.05)
    assert median3_db == pytest.approx(23.57, abs=0.05)
    assert switching_db == pytest.approx(52.90, abs=0.05)
    assert switching_db > median3_db + 20 and switching_db > noisy_db + 40


@pytest.mark.parametrize("name,measured", [("gaussian_blur", 31.21), ("tv", 34.48), ("nlm", 34.84)])
def test_smoothing_baselines_improve_psnr_on_gaussian_noise_sigma_25(name: str, measured: float, clean: np.ndarray, gaussy: np.ndarray) -> None:
    noisy_db = mean_psnr(gaussy, clean)
    out_db = mean_psnr(B.BASELINES[name](gaussy), clean)
    assert noisy_db == pytest.approx(20.98, abs=0.05)
    assert out_db == pytest.approx(measured, abs=0.05)
    assert out_db > noisy_db + 9


def test_noise_sigma_estimate_is_near_zero_on_clean_images_and_near_the_true_sigma_on_noisy_ones(clean: np.ndarray) -> None:
    assert B.estimate_noise_sigma(clean).max() < 0.001
    np.testing.assert_allclose(B.estimate_noise_sigma(with_gaussian(clean, 10.0)), 10 / 255, rtol=0.05)


@pytest.mark.skipif(not HAS_BM3D, reason="bm3d not installed")
def test_bm3d_returns_float32_unit_range_images_and_improves_psnr_on_gaussian_noise_sigma_25(clean: np.ndarray, gaussy: np.ndarray) -> None:
    out = B.BASELINES["bm3d"](gaussy[:2])  # default sigma is 25/255
    assert out.shape == (2, 48, 48) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    noisy_db, out_db = mean_psnr(gaussy[:2], clean[:2]), mean_psnr(out, clean[:2])
    # measured: 21.38 dB noisy, 36.20 dB after BM3D (bm3d 4.0.3)
    assert noisy_db == pytest.approx(21.38, abs=0.05)
    assert out_db > noisy_db + 12


def test_tune_parameter_picks_the_best_grid_value_and_returns_the_table(clean: np.ndarray, gaussy: np.ndarray) -> None:
    grid = [0.5, 1.0, 2.0]
    best, table = B.tune_parameter("gaussian_blur", gaussy, clean, grid)
    assert [value for value, _ in table] == grid
    assert best in grid
    assert best == max(table, key=lambda row: row[1])[0] == 2.0
    for value, db in table:
        assert db == pytest.approx(mean_psnr(B.gaussian_blur(gaussy, sigma=value), clean))
    assert table[0][1] < table[1][1] < table[2][1]


def test_tune_parameter_refuses_a_baseline_without_a_tunable_parameter(clean: np.ndarray, gaussy: np.ndarray) -> None:
    with pytest.raises(ValueError, match="no tunable parameter"):
        B.tune_parameter("median3", gaussy, clean, [3, 5])
