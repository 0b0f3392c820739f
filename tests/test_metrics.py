import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from denoise_core.data import parse_csv_bytes, to_float
from denoise_core.evaluate import evaluate_on_holdout
from denoise_core.holdout import make_holdout
from denoise_core.metrics import PSNR_CAP, batched_quality, psnr, ssim, ssim_gaussian, ssim_map
from denoise_core.noise import corrupt, make_generator
from results.curves import score
from synthetic import smooth_faces


@pytest.fixture(scope="module")
def real_pairs(fer2013_slice):
    images, _ = parse_csv_bytes(fer2013_slice)
    images = images[::15]
    clean = torch.from_numpy(to_float(images))
    noisy = torch.cat([corrupt(clean[:60], "sp:0.2", make_generator(0)), corrupt(clean[60:], "sp:0.1+gauss:15", make_generator(1))])
    return noisy, clean


def scikit_image(noisy: torch.Tensor, clean: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    pairs = list(zip(noisy.numpy().astype(np.float64), clean.numpy().astype(np.float64)))
    return (np.array([peak_signal_noise_ratio(c, n, data_range=1.0) for n, c in pairs]),
            np.array([structural_similarity(n, c, data_range=1.0) for n, c in pairs]))


def test_psnr_and_ssim_equal_scikit_image_on_real_faces(real_pairs):
    noisy, clean = real_pairs
    reference_psnr, reference_ssim = scikit_image(noisy, clean)
    assert np.abs(psnr(noisy, clean).numpy() - reference_psnr).max() < 1e-4
    assert np.abs(ssim(noisy, clean).numpy() - reference_ssim).max() < 1e-4
    assert 0.05 < reference_ssim.mean() < 0.9


def test_ssim_equals_scikit_image_on_generated_faces():
    clean = torch.from_numpy(to_float(smooth_faces(16)))
    noisy = corrupt(clean, "gauss:20", make_generator(3))
    reference_psnr, reference_ssim = scikit_image(noisy, clean)
    assert np.abs(ssim(noisy, clean).numpy() - reference_ssim).max() < 1e-4
    assert np.abs(psnr(noisy, clean).numpy() - reference_psnr).max() < 1e-4


def scikit_image_gaussian(noisy: torch.Tensor, clean: torch.Tensor) -> np.ndarray:
    """The literature's SSIM as scikit-image computes it (Wang et al. 2004's window; BasicSR's ``calculate_ssim``)."""
    return np.array([structural_similarity(n, c, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                     for n, c in zip(noisy.numpy().astype(np.float64), clean.numpy().astype(np.float64))])


def test_gaussian_window_ssim_equals_scikit_image_on_real_faces_on_both_paths(real_pairs):
    noisy, clean = real_pairs
    reference = scikit_image_gaussian(noisy, clean)
    compiled = ssim_gaussian(noisy, clean)
    tensor_formula = ssim_gaussian(noisy.clone().requires_grad_(), clean)  # the torch path, as on a GPU
    assert np.abs(compiled.numpy() - reference).max() < 1e-5
    assert np.abs(tensor_formula.detach().numpy() - reference).max() < 1e-5
    assert 0.05 < reference.mean() < 0.95


def test_gaussian_window_ssim_is_another_number_than_the_uniform_one_and_one_for_identical_faces():
    clean = torch.from_numpy(to_float(smooth_faces(8)))
    noisy = corrupt(clean, "gauss:20", make_generator(4))
    gaussian = ssim_gaussian(noisy, clean).numpy()
    assert np.abs(gaussian - scikit_image_gaussian(noisy, clean)).max() < 1e-5
    assert np.abs(gaussian - ssim(noisy, clean).numpy()).min() > 1e-3
    assert np.allclose(ssim_gaussian(clean, clean).numpy(), 1.0)
    assert np.allclose(ssim_gaussian(noisy[:, None], clean[:, None]).numpy(), gaussian)


def test_full_ssim_map_equals_scikit_image_full_map():
    clean = torch.from_numpy(to_float(smooth_faces(2)))
    noisy = corrupt(clean, "sp:0.1", make_generator(4))
    _, reference = structural_similarity(noisy[0].numpy().astype(np.float64), clean[0].numpy().astype(np.float64), data_range=1.0, full=True)
    ours = ssim_map(noisy, clean, full=True)
    assert ours.shape == (2, 1, 48, 48)
    assert np.abs(ours[0, 0].numpy() - reference).max() < 1e-4


def test_metrics_accept_single_images_and_channel_batches():
    clean = torch.from_numpy(to_float(smooth_faces(3)))
    noisy = corrupt(clean, "gauss:10", make_generator(5))
    assert psnr(noisy[0], clean[0]).shape == (1,)
    assert torch.allclose(ssim(noisy[:, None], clean[:, None]), ssim(noisy, clean))
    with pytest.raises(ValueError, match="expected images shaped"):
        psnr(noisy[:, None, None], clean[:, None, None])


def test_identical_images_give_the_capped_psnr_and_unit_ssim():
    clean = torch.from_numpy(to_float(smooth_faces(2)))
    assert PSNR_CAP == 60.0 and torch.equal(psnr(clean, clean), torch.full((2,), PSNR_CAP, dtype=torch.float64))
    assert torch.allclose(ssim(clean, clean), torch.ones(2, dtype=torch.float64))


def test_holdout_scores_and_curves_give_the_same_mean_psnr_when_some_faces_come_back_unchanged():
    holdout = make_holdout(smooth_faces(8), ("none", "sp:0.3"), seed=1)
    clean = to_float(holdout.clean)

    def half_oracle(noisy: np.ndarray) -> np.ndarray:
        return np.concatenate([clean[:4], noisy[4:]])

    table = evaluate_on_holdout(half_oracle, holdout).set_index("condition")
    for condition in ("none", "sp:0.3"):
        curve = score(half_oracle, holdout, condition, faces=None)
        assert table.at[condition, "psnr"] == curve["psnr"] and table.at[condition, "noisy_psnr"] == curve["noisy_psnr"]
    assert table.at["none", "psnr"] == table.at["none", "noisy_psnr"] == PSNR_CAP
    assert table.at["sp:0.3", "noisy_psnr"] < table.at["sp:0.3", "psnr"] < PSNR_CAP


def test_holdout_scores_and_curves_publish_the_gaussian_window_ssim_beside_the_uniform_one():
    holdout = make_holdout(smooth_faces(6), ("sp:0.3", "gauss:25"), seed=2)
    clean = to_float(holdout.clean)

    def blur(noisy: np.ndarray) -> np.ndarray:
        return (noisy + np.roll(noisy, 1, axis=-1) + np.roll(noisy, -1, axis=-1)) / 3

    table = evaluate_on_holdout(blur, holdout).set_index("condition")
    for condition in holdout.conditions:
        noisy = to_float(holdout.noisy_for(condition))
        expected = scikit_image_gaussian(torch.from_numpy(blur(noisy)), torch.from_numpy(clean)).mean()
        expected_noisy = scikit_image_gaussian(torch.from_numpy(noisy), torch.from_numpy(clean)).mean()
        curve = score(blur, holdout, condition, faces=None)
        assert abs(table.at[condition, "ssim_gauss"] - expected) < 1e-5 and abs(table.at[condition, "noisy_ssim_gauss"] - expected_noisy) < 1e-5
        assert curve["ssim_gauss"] == table.at[condition, "ssim_gauss"] and curve["noisy_ssim_gauss"] == table.at[condition, "noisy_ssim_gauss"]
        assert curve["ssim"] == table.at[condition, "ssim"] != curve["ssim_gauss"]


def test_batched_quality_matches_unchunked():
    clean = torch.from_numpy(to_float(smooth_faces(10)))
    noisy = corrupt(clean, "sp:0.3", make_generator(6))
    chunked_psnr, chunked_ssim = batched_quality(noisy, clean, chunk=3)
    assert torch.allclose(chunked_psnr, psnr(noisy, clean)) and torch.allclose(chunked_ssim, ssim(noisy, clean))


def test_cpu_kernel_and_tensor_formula_give_the_same_ssim():
    clean = torch.from_numpy(to_float(smooth_faces(12)))
    noisy = corrupt(clean, "sp:0.2+gauss:10", make_generator(7))
    compiled = ssim(noisy, clean)
    tensor_formula = ssim_map(noisy, clean).flatten(1).mean(dim=1)
    assert torch.allclose(compiled, tensor_formula, atol=1e-10)
    assert torch.allclose(ssim(noisy.double(), clean.double(), data_range=2.0), ssim_map(noisy, clean, data_range=2.0).flatten(1).mean(1), atol=1e-10)


def test_ssim_runs_numba_beside_torch_without_a_spinning_openmp_team():
    import numba

    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        ssim(torch.rand(3, 1, 48, 48), torch.rand(3, 1, 48, 48))
        assert numba.get_num_threads() == 1
        assert numba.threading_layer() == "workqueue"  # numba's OpenMP team spun beside every torch step
    finally:
        torch.set_num_threads(previous)
