"""Telling faces saved as JPEG from the rest, by the quantisation left in their 8x8 DCT blocks."""

import numpy as np
import pytest
import torch

from denoise_core.jpeg_trace import JPEG_THRESHOLD, jpeg_scores, looks_jpeg, quantisation_table
from denoise_core.noise import corrupt, make_generator
from synthetic import smooth_faces

FACES = torch.from_numpy(smooth_faces(8, seed=4)).float() / 255.0


def noisy(spec: str) -> np.ndarray:
    return corrupt(FACES, spec, make_generator(3)).mul(255).round().div(255).numpy()


def test_the_quality_50_table_is_the_standard_one_and_higher_qualities_scale_it_down():
    assert quantisation_table(50)[0].tolist() == [16, 11, 10, 16, 24, 40, 51, 61]
    assert quantisation_table(90)[0, :3].tolist() == [3, 2, 2] and quantisation_table(100).max() == 1


@pytest.mark.parametrize("spec", ["none", "sp:0.1", "sp:0.5", "gauss:10", "gauss:25", "rv:0.1", "sp:0.1+gauss:10"])
def test_faces_never_saved_as_jpeg_score_low(spec):
    scores, _ = jpeg_scores(noisy(spec))
    assert scores.max() < JPEG_THRESHOLD
    assert looks_jpeg(noisy(spec)) == (False, 0)


@pytest.mark.parametrize("spec,quality", [("sp:0.1+jpeg:90", 90), ("sp:0.05+jpeg:95", 95), ("gauss:25+jpeg:75", 75), ("rv:0.1+jpeg:80", 80),
                                          ("jpeg:85", 85)])
def test_faces_saved_as_jpeg_score_high_and_name_their_quality(spec, quality):
    scores, qualities = jpeg_scores(noisy(spec))
    assert scores.min() > 1.5 * JPEG_THRESHOLD
    saved, estimate = looks_jpeg(noisy(spec))
    assert saved and abs(estimate - quality) <= 2
    assert np.median(np.abs(qualities - quality)) <= 2


def test_faces_too_small_for_one_block_are_not_judged():
    scores, qualities = jpeg_scores(np.full((2, 7, 30), 0.5))
    assert scores.tolist() == [0.0, 0.0] and qualities.tolist() == [0, 0]
