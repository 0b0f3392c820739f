"""The README's grid: a face that is not from FER2013, corrupted with the hold-out's noise, restored by models and filters."""

from __future__ import annotations

import numpy as np
import pytest

from denoise_core.baselines import switching_median
from denoise_core.evaluate import score_images
from denoise_core.model import ConvAutoencoder, ModelConfig
from results.showcase import astronaut_face, face_from_photo, main, oracle_filter, showcase_columns
from tests.synthetic import smooth_faces


def test_astronaut_face_is_a_48x48_grayscale_face_from_scikit_image():
    face = astronaut_face()
    assert face.shape == (48, 48) and face.dtype == np.uint8
    assert 60 < face.mean() < 200 and face.std() > 30  # a lit face with dark hair and clothes, not a blank crop


def test_a_box_outside_the_photo_is_refused():
    with pytest.raises(ValueError, match="lies outside"):
        face_from_photo(np.zeros((100, 100), np.uint8), (50, 50, 60))


def test_oracle_filter_picks_the_best_grid_value_for_each_face():
    clean = smooth_faces(3, seed=4).astype(np.float32) / 255.0
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    from denoise_core.baselines import gaussian_blur
    from results.classical import GRIDS

    best = score_images(oracle_filter("gaussian_blur", noisy, clean), clean)[0]
    for sigma in GRIDS["gaussian_blur"]:
        assert (best >= score_images(gaussian_blur(noisy, sigma=sigma), clean)[0] - 1e-6).all()
    np.testing.assert_array_equal(oracle_filter("switching_median", noisy, clean), switching_median(noisy))


def test_showcase_columns_hold_one_row_per_condition(tmp_path):
    face = smooth_faces(1, seed=2)[0]
    model = ConvAutoencoder(ModelConfig(base_width=4, bottleneck_size=4, dropout=0.0)).eval()
    conditions = ("sp:0.3", "gauss:25")
    columns = showcase_columns(face, {"tiny": model}, conditions, filters=("switching_median",))
    assert list(columns) == ["noisy", "tiny", "switching median", "clean"]
    assert all(column.shape == (2, 48, 48) for column in columns.values())
    noisy_psnr, _ = score_images(columns["noisy"], columns["clean"])
    assert 9.0 < noisy_psnr[0] < 12.0 and 19.0 < noisy_psnr[1] < 22.5  # S&P 0.3 and sigma 25 on a mid-grey face
    filtered_psnr, _ = score_images(columns["switching median"], columns["clean"])
    assert filtered_psnr[0] > noisy_psnr[0] + 10.0


def test_showcase_cli_writes_the_grid_and_refuses_to_overwrite_it(tmp_path, capsys):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.kron(smooth_faces(1, seed=3)[0], np.ones((2, 2), np.uint8))).save(photo)
    out = tmp_path / "grid.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out), "--image", str(photo)])
    assert exit_info.value.code == 0 and Image.open(out).size[0] > 600
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out), "--image", str(photo)])
    assert exit_info.value.code == 2 and "exists; pass --overwrite" in capsys.readouterr().err
