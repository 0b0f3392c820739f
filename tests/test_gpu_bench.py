"""The parts of bench/gpu.py (and bench/gpu_check/) that need no GPU: its tables, the packed data file, and its refusal without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.gpu_check.cuda_tests import pytest_counts
from bench.gpu_check.data import pack_data, pack_faces, read_faces_npz
from bench.gpu_check.models import FULL_PRESET, search_models
from bench.tables import markdown_table
from denoise_core.data import PRIVATE_TEST, PUBLIC_TEST, TRAINING, Faces, split_faces
from denoise_core.model import model_config_from_dict
from denoise_core.settings import load_yaml_file
from bench_module import load_bench
from synthetic import smooth_faces



gpu = load_bench("gpu.py")  # the command itself, for its options and its refusal without CUDA


def test_markdown_table_aligns_numbers_right_and_marks_missing_cells():
    lines = markdown_table([{"model": "default", "img/s": 123456.0, "ms/step": 1.23456}, {"model": "largest", "status": "skipped: budget"}])
    assert lines[0] == "| model   |   img/s | ms/step | status          |"
    assert lines[1] == "|---------|--------:|--------:|-----------------|"
    assert lines[2] == "| default | 123,456 |   1.235 | -               |"
    assert lines[3] == "| largest |       - |       - | skipped: budget |"


def test_pytest_counts_read_the_summary_line():
    output = "...\nFAILED tests/test_cuda.py::test_x - boom\n1 failed, 9 passed, 2 skipped, 4 deselected, 1 error in 12.3s\n"
    assert pytest_counts(output) == {"passed": 9, "failed": 1, "error": 1, "skipped": 2, "deselected": 4}
    assert pytest_counts("11 skipped, 4 deselected in 3.1s")["passed"] == 0


def faces_with_a_test_copy_late_in_training() -> tuple[np.ndarray, np.ndarray]:
    images = smooth_faces(10)
    usage = np.array([TRAINING] * 6 + [PUBLIC_TEST] * 2 + [PRIVATE_TEST] * 2, dtype=np.int8)
    images[5] = images[9]  # the last Training face is also a PrivateTest face
    return images, usage


def test_pack_keeps_every_test_face_the_first_training_faces_and_training_copies_of_test_faces():
    images, usage = faces_with_a_test_copy_late_in_training()
    packed_images, packed_usage = pack_faces(images, usage, train_faces=2)
    assert np.array_equal(packed_images, images[[0, 1, 5, 6, 7, 8, 9]])
    assert packed_usage.tolist() == [TRAINING] * 3 + [PUBLIC_TEST] * 2 + [PRIVATE_TEST] * 2
    whole = split_faces(Faces(images, usage, "whole", 0))
    packed = split_faces(Faces(packed_images, packed_usage, "packed", 0))
    assert np.array_equal(packed.test_unique, whole.test_unique)


def test_pack_data_writes_a_file_the_faces_reader_loads(tmp_path, capsys):
    images, usage = faces_with_a_test_copy_late_in_training()
    images[0] = 128  # a blank face, as in the raw parse cache: left out, as load_fer2013 leaves it out
    np.savez(tmp_path / "cache.npz", images=images, usage=usage)
    size = pack_data(tmp_path / "cache.npz", tmp_path / "out" / "faces.npz", train_faces=3)
    assert size == (tmp_path / "out" / "faces.npz").stat().st_size
    assert "8 faces (4 Training, 2 PublicTest, 2 PrivateTest)" in capsys.readouterr().out
    faces = read_faces_npz(tmp_path / "out" / "faces.npz")
    assert faces.images.dtype == np.uint8 and faces.usage.dtype == np.int8
    assert np.array_equal(faces.images, images[[1, 2, 3, 5, 6, 7, 8, 9]])  # three Training faces after the blank, and the test copy


def test_benchmarked_models_are_the_extremes_of_the_full_search():
    preset = load_yaml_file(FULL_PRESET)
    models = search_models(preset)
    for name in ("base_width", "stages", "bottleneck_size"):
        choices = preset["search"][f"model.{name}"]["choice"]
        assert getattr(models["smallest"], name) == min(choices) and getattr(models["largest"], name) == max(choices)
    assert models["default"] == model_config_from_dict(preset["train"]["model"])


def test_the_benchmark_stops_in_one_line_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="CUDA is not available.*--pack-data"):
        gpu.main([])


def test_the_precisions_option_takes_known_precisions_and_refuses_others(capsys):
    assert gpu.precision_list("fp16, bf16,fp32") == ("fp16", "bf16", "fp32")
    with pytest.raises(SystemExit):
        gpu.main(["--precisions", "fp8"])
    assert "'fp8': give one or more of fp16, bf16, fp32" in capsys.readouterr().err
