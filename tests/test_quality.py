"""The model-card tables (results.quality, bench/quality.py) and the shipped model itself."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from denoise_core.baselines import adaptive_median, total_variation
from denoise_core.checkpoint import export_model, load_model, save_checkpoint
from denoise_core.data import load_fer2013, split_faces, to_float
from denoise_core.denoise import SHIPPED_GAUSS_MODEL, SHIPPED_IMPULSE_MODEL, SHIPPED_MODEL, SHIPPED_MODELS, denoise_array
from denoise_core.evaluate import score_images
from denoise_core.holdout import make_holdout
from denoise_core.model import ModelConfig
from denoise_core.noise import trained_kinds
from denoise_core.fit import TrainConfig, fit
from results.quality import (
    QualityOptions, card_difference, evaluate_model_files, margins_markdown, model_card_section, recommended_model, replace_between_markers,
    section_between_markers,
)
from results.classical import GRIDS
from tests.synthetic import smooth_splits

REPO_ROOT = Path(__file__).resolve().parents[1]
CARD = REPO_ROOT / "models" / "README.md"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    config = TrainConfig(model=ModelConfig(base_width=4, stages=2, bottleneck_size=8, mask_input=True, gate=True), noise="sp:0.1-0.4|gauss:10-30",
                         epochs=2, batch_size=16, lr=0.01, seed=0, device="cpu")
    result = fit(config, smooth_splits(96, 32, 16))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_checkpoint(export_model(result.checkpoint), path)
    return path


def test_margins_are_measured_against_the_weakest_margin_on_the_same_faces(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "cache"))
    options = QualityOptions(conditions=("sp:0.3", "gauss:25"), faces=12, slow_faces=4, tune_faces=4,
                             bm3d_conditions=("gauss:25",), baselines=("median3", "switching_median", "bm3d"), device="cpu")
    quality = evaluate_model_files([tiny_model], smooth_splits(96, 32, 16), options)
    assert set(quality.scores["model"]) == {"model", "median3", "switching_median", "bm3d"}
    assert quality.kinds == {"model": ("sp", "gauss")}
    assert list(quality.margins["condition"]) == ["sp:0.3", "gauss:25"] and quality.margins["recommended"].all()
    for row in quality.margins.itertuples():
        rivals = quality.scores[(quality.scores["condition"] == row.condition) & (quality.scores["family"] == "classical")]
        rival = rivals[rivals["model"] == row.rival].iloc[0]
        assert row.margin_db == pytest.approx(row.model_psnr_same_faces - rival["psnr"])
        assert row.faces == rival["faces"]
        assert row.required_db == {"sp:0.3": 1.5, "gauss:25": 1.0}[row.condition]  # the stronger bars at these two
        assert row.meets_bar == (row.margin_db >= row.required_db and (row.condition != "sp:0.3" or row.model_ssim_same_faces >= row.rival_ssim))
    gauss = quality.margins.set_index("condition").loc["gauss:25"]
    if gauss["rival"] == "bm3d":  # scored on 4 faces: the model is re-scored on those 4
        assert gauss["faces"] == 4 and gauss["model_psnr_same_faces"] != gauss["model_psnr"]
    table = margins_markdown(quality.margins)
    assert "Bar met at" in table and table.count("\n| ") == 2


def test_each_noise_kind_is_judged_with_the_most_specialised_model_trained_for_it():
    assert trained_kinds("sp:0.02-0.95|gauss:5-55|sp:0.05-0.35+gauss:5-35") == ("sp", "gauss", "mixture")
    assert trained_kinds("sp:0.05-0.5") == ("sp",)
    kinds = {"blind": ("sp", "gauss", "mixture"), "impulse": ("sp",)}
    assert [recommended_model(kinds, k) for k in ("sp", "gauss", "mixture")] == ["impulse", "blind", "blind"]
    assert recommended_model(kinds, "jpeg") == "blind"  # no model trained for it: the default, most general one
    assert recommended_model({}, "gauss") is None


def test_card_section_is_replaced_between_markers_only():
    card = "# Card\nintro\n<!-- quality:start -->\nold table\n<!-- quality:end -->\nfooter\n"
    assert replace_between_markers(card, "new table") == "# Card\nintro\n<!-- quality:start -->\nnew table\n<!-- quality:end -->\nfooter\n"
    with pytest.raises(ValueError, match="needs the markers"):
        replace_between_markers("# Card without markers\n", "new table")


def test_quality_bench_refuses_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "quality.py"), "--model", str(tmp_path / "nope.pt")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def real_test_faces(fer2013_slice: bytes, tmp_path: Path, condition: str):
    """48 real PrivateTest faces (not copies of Training faces): noisy at ``condition`` and clean, as floats."""
    path = tmp_path / "slice.csv"
    path.write_bytes(fer2013_slice)
    faces = split_faces(load_fer2013(path, use_cache=False)).test_unique[:48]
    return to_float(make_holdout(faces, (condition,)).noisy[0]), to_float(faces)


@pytest.mark.parametrize("shipped", [SHIPPED_MODEL, SHIPPED_IMPULSE_MODEL], ids=lambda path: path.stem)
def test_shipped_model_beats_the_adaptive_median_on_real_faces_at_density_0_3(shipped, fer2013_slice, tmp_path):
    """Real PrivateTest faces at S&P 0.3: each shipped model trained for impulses against the adaptive median filter."""
    noisy, clean = real_test_faces(fer2013_slice, tmp_path, "sp:0.3")
    model, _ = load_model(shipped, "cpu")
    model_psnr, model_ssim = score_images(denoise_array(model, noisy, "cpu"), clean)
    median_psnr, median_ssim = score_images(adaptive_median(noisy), clean)
    assert model_psnr.mean() > median_psnr.mean() + 1.0
    assert model_ssim.mean() > median_ssim.mean()
    assert (model_psnr > median_psnr).mean() > 0.9


def test_shipped_gaussian_model_beats_total_variation_at_its_best_weight_on_real_faces_at_sigma_25(fer2013_slice, tmp_path):
    """Real PrivateTest faces at Gaussian sigma 25: the Gaussian model against TV with its weight chosen on these very faces."""
    noisy, clean = real_test_faces(fer2013_slice, tmp_path, "gauss:25")
    model, _ = load_model(SHIPPED_GAUSS_MODEL, "cpu")
    model_psnr, model_ssim = score_images(denoise_array(model, noisy, "cpu"), clean)
    tv = [score_images(total_variation(noisy, weight=weight), clean) for weight in GRIDS["tv"]]
    assert model_psnr.mean() > max(psnr.mean() for psnr, _ in tv) + 0.5
    assert model_ssim.mean() > max(ssim.mean() for _, ssim in tv)


def test_shipped_models_are_small_and_the_card_shows_their_quality():
    assert all(path.stat().st_size < 5 * 2**20 for path in SHIPPED_MODELS)
    card = CARD.read_text()
    section = card.split("<!-- quality:start -->")[1].split("<!-- quality:end -->")[0]
    assert "Bar met at" in section
    for path in SHIPPED_MODELS:
        assert f"python -m denoise_core.train --config models/{path.stem}.yaml" in card
    assert re.search(r"\| sp:0\.3 \| fer2013-impulse \| \d+\.\d\d / 0\.\d{3} \|", section)
    assert re.search(r"\| gauss:25 \| fer2013-gauss \| \d+\.\d\d / 0\.\d{3} \|", section)
    assert re.search(r"\| sp:0\.1\+gauss:10 \| fer2013-blind \| \d+\.\d\d / 0\.\d{3} \|", section)


def test_card_check_allows_one_unit_of_the_last_digit_and_nothing_else():
    card = "| sp:0.3 | 31.20 / 0.961 | switching_median (3301 faces) | +1.25 dB |"
    assert card_difference(card, card) == ""
    assert card_difference(card, card.replace("31.20", "31.21").replace("0.961", "0.960")) == ""
    assert "31.20" in card_difference(card, card.replace("31.20", "31.23"))
    assert "0.961" in card_difference(card, card.replace("0.961", "0.958"))
    assert "text differs" in card_difference(card, card.replace("switching_median", "bm3d"))
    assert section_between_markers("a\n<!-- quality:start -->\n table \n<!-- quality:end -->\nb") == "table"


@pytest.mark.slow
def test_model_card_equals_what_the_quality_bench_measures_now(fer2013_path):
    """The whole hold-out, every filter (the first run on a machine computes every filter: up to an hour), with the
    options the card says it was measured with."""
    options = re.search(r"Measured by `python bench/quality.py([^`]*)`", CARD.read_text()).group(1).split()
    result = subprocess.run([sys.executable, str(REPO_ROOT / "bench" / "quality.py"), *options, "--check-card", str(CARD), "--data", str(fer2013_path)],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "matches this run" in result.stdout


def test_the_required_margin_is_the_kinds_unless_the_condition_has_a_stronger_one():
    from results.quality import required_margin

    assert [required_margin(c) for c in ("sp:0.1", "sp:0.3", "sp:0.9", "gauss:15", "gauss:50", "sp:0.1+gauss:10", "rv:0.2", "sp:0.1+jpeg:90")] == \
        [1.0, 1.5, 1.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_a_model_is_compared_with_the_file_it_replaced_at_the_synthetic_conditions(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("FACESTUDY_CACHE", str(tmp_path / "cache"))
    options = QualityOptions(conditions=("sp:0.3", "gauss:25", "rv:0.1"), faces=12, slow_faces=4, tune_faces=4, bm3d_conditions=(),
                             baselines=("median3",), device="cpu", replaces=tiny_model)
    quality = evaluate_model_files([tiny_model], smooth_splits(96, 32, 16), options)
    replaced = quality.replaced
    assert list(replaced["condition"]) == ["sp:0.3", "gauss:25"]  # rv:0.1 is not a synthetic condition
    assert (replaced["difference_db"] == 0.0).all() and replaced["within_bar"].all()  # the same file: no difference
    own = quality.scores[quality.scores["model"] == "model"].set_index("condition")["psnr"]
    assert list(replaced["psnr"]) == [own["sp:0.3"], own["gauss:25"]]
    section = model_card_section(quality, "python bench/quality.py", 12)
    assert "### Against the model it replaced" in section and "Within 0.3 dB of the replaced model at 2 of 2 synthetic conditions." in section
    assert f"| {Path(tiny_model).as_posix()} (replaced) |" in section  # the path as given: an older file may share the new one's name
    assert "### Against the model it replaced" not in model_card_section(dataclasses.replace(quality, replaced=pd.DataFrame()), "x", 12)
