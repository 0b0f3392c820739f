"""The GPU path: training, noise, metrics, the denoise CLI and checkpoints on CUDA; skipped where there is none.

Run them with ``python -m pytest -m cuda tests/test_cuda.py``; ``bench/gpu.py`` runs them first on the GPU machine.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import numpy as np
import pytest
import torch

from denoise_core.checkpoint import export_model, load_checkpoint, load_model, save_checkpoint
from denoise_core.denoise import SHIPPED_MODEL
from denoise_core.denoise import main as denoise_main
from denoise_core.metrics import batched_quality, psnr, ssim
from denoise_core.model import ModelConfig
from denoise_core.noise import corrupt, make_generator
from denoise_core.fit import TrainConfig, fit
from synthetic import smooth_faces, smooth_splits

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CONFIG = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=8, dropout=0.1), noise="sp:0.2", epochs=2, batch_size=16,
                     lr=3e-3, seed=0, device="cuda", precision="fp32")


@pytest.fixture
def deterministic_cudnn(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)


def weights(checkpoint) -> torch.Tensor:
    return torch.cat([v.float().flatten().cpu() for v in checkpoint["model_state"].values()])


def test_resume_on_cuda_continues_exactly_like_an_uninterrupted_run(deterministic_cudnn, tmp_path):
    data = smooth_splits(train=64, val=16, test=8)
    fit(replace(CONFIG, epochs=1), data)  # warm-up: the first kernels of a process may be chosen differently
    straight, again = fit(CONFIG, data), fit(CONFIG, data)
    assert torch.equal(weights(straight.checkpoint), weights(again.checkpoint)), "uninterrupted CUDA runs differ: not deterministic"
    interrupted = fit(CONFIG, data, on_epoch=lambda report: report.epoch == 1)
    assert "cuda_rng_state" in interrupted.checkpoint  # dropout on the GPU draws from the CUDA generator
    save_checkpoint(interrupted.checkpoint, tmp_path / "epoch1.pt")
    resumed = fit(CONFIG, data, resume=load_checkpoint(tmp_path / "epoch1.pt"))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in straight.history]
    assert torch.equal(weights(resumed.checkpoint), weights(straight.checkpoint))


@contextmanager
def full_fp32() -> Iterator[None]:
    """cuDNN and cuBLAS round float32 products to TF32 (10-bit mantissas) by default; comparing code paths needs true fp32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """fit's ``wrap_model`` hook, used here to train on channels-last weights (fit itself does so on the CPU only)."""
    return model.to(memory_format=torch.channels_last)


def faces(count: int) -> torch.Tensor:
    return torch.from_numpy(smooth_faces(count)).unsqueeze(1).float().div_(255.0)


def test_fit_with_fp16_autocast_and_channels_last_on_cuda_improves_validation_psnr():
    result = fit(replace(CONFIG, precision="fp16", epochs=4), smooth_splits(train=256, val=64, test=8), wrap_model=channels_last)
    history = result.history
    assert result.checkpoint["scaler_state"], "no GradScaler state: fp16 autocast did not run"
    assert result.checkpoint["model_state"]["encoder.0.3.weight"].is_contiguous(memory_format=torch.channels_last)  # 4 -> 4 maps: not trivially so
    for epoch in history:
        assert all(math.isfinite(epoch[key]) for key in ("train_loss", "val_loss", "val_psnr", "val_ssim")), epoch
    assert max(epoch["val_psnr"] for epoch in history[1:]) > history[0]["val_psnr"]
    assert result.best["val_psnr"] > history[0]["noisy_psnr"]


def impulse_shares(noisy: torch.Tensor) -> tuple[float, float]:
    return float((noisy == 0.0).float().mean()), float((noisy == 1.0).float().mean())


@pytest.mark.parametrize("spec", ["sp:0.3", "sp:0.05-0.5", "gauss:25", "gauss:5-55", "sp:0.1+gauss:10"])
def test_noise_on_cuda_has_the_statistics_of_the_cpu_noise(spec):
    """Not bitwise: the CPU and CUDA generators draw different streams from one seed. On 8192 grey faces (19 million
    pixels) pepper and salt shares agree within 0.01, and the Gaussian deviation of the other pixels within 2% (3% for a
    range of sigmas) with its mean within 0.002. A range's per-face draws leave the two devices' shares about 0.001 apart
    (one standard error) and their deviations about 0.6%, so the tolerances are 5 standard errors or more."""
    clean = torch.full((8192, 1, 48, 48), 0.5)
    cpu = corrupt(clean, spec, make_generator(0))
    gpu = corrupt(clean.cuda(), spec, make_generator(0, "cuda"))
    assert gpu.device.type == "cuda" and gpu.dtype == cpu.dtype
    gpu = gpu.cpu()
    for device_share, cpu_share in zip(impulse_shares(gpu), impulse_shares(cpu)):
        assert abs(device_share - cpu_share) <= 0.01
    if "gauss" in spec:
        deviation = {name: (noisy - 0.5)[(noisy > 0.0) & (noisy < 1.0)] for name, noisy in (("cpu", cpu), ("gpu", gpu))}
        assert abs(float(deviation["gpu"].mean()) - float(deviation["cpu"].mean())) <= 0.002
        assert float(deviation["gpu"].std()) == pytest.approx(float(deviation["cpu"].std()), rel=0.03 if "-" in spec else 0.02)


def test_noise_on_cuda_repeats_with_its_seed_and_mixes_kinds_on_the_device():
    clean = faces(512).cuda()
    spec = "sp:0.02-0.9|gauss:5-55|sp:0.05-0.3+gauss:5-30"
    first, second = (corrupt(clean, spec, make_generator(7, "cuda")) for _ in range(2))
    assert first.device.type == "cuda"
    assert torch.equal(first, second)
    assert not torch.equal(first, corrupt(clean, spec, make_generator(8, "cuda")))
    assert 0.0 <= float(first.min()) and float(first.max()) <= 1.0


def test_psnr_and_ssim_on_cuda_equal_the_cpu_within_1e_4():
    clean = faces(256)
    noisy = corrupt(clean, "sp:0.1+gauss:10", make_generator(0))
    for metric in (psnr, ssim):
        on_cpu, on_gpu = metric(noisy, clean), metric(noisy.cuda(), clean.cuda())
        assert on_gpu.device.type == "cuda"
        assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=0.0, atol=1e-4), metric.__name__
    for on_cpu, on_gpu in zip(batched_quality(noisy, clean, chunk=100), batched_quality(noisy.cuda(), clean.cuda(), chunk=100)):
        assert torch.allclose(on_gpu.cpu(), on_cpu, rtol=0.0, atol=1e-4)


def run_denoise_cli(device: str, source, target) -> np.ndarray:
    with pytest.raises(SystemExit) as exit:
        denoise_main(["--model", str(SHIPPED_MODEL), "--device", device, "--overwrite", str(source), str(target)])
    assert exit.value.code == 0
    return np.load(target)


def test_denoise_cli_on_cuda_equals_the_cpu_output_within_1e_3(tmp_path):
    """Float .npy in and out, so no rounding to 8 bits hides or makes a difference. In true fp32 every pixel agrees
    within 1e-3; with cuDNN's default TF32 convolutions (what users get) the mean difference stays within 2e-3, half a
    grey level."""
    source = tmp_path / "noisy.npy"
    np.save(source, corrupt(faces(64), "sp:0.3", make_generator(0)).squeeze(1).numpy())
    on_cpu = run_denoise_cli("cpu", source, tmp_path / "cpu.npy")
    with_tf32 = run_denoise_cli("cuda", source, tmp_path / "tf32.npy")
    with full_fp32():
        in_fp32 = run_denoise_cli("cuda", source, tmp_path / "fp32.npy")
    assert on_cpu.shape == in_fp32.shape == (64, 48, 48) and in_fp32.dtype == np.float32
    assert np.abs(in_fp32 - on_cpu).max() <= 1e-3
    assert np.abs(with_tf32 - on_cpu).mean() <= 2e-3


def test_a_checkpoint_saved_on_cuda_loads_on_the_cpu_and_back(tmp_path):
    result = fit(replace(CONFIG, epochs=1), smooth_splits(train=64, val=16, test=8))
    assert all(tensor.device.type == "cuda" for tensor in result.checkpoint["model_state"].values())
    from_cuda = save_checkpoint(export_model(result.checkpoint), tmp_path / "from-cuda.pt")
    on_cpu, checkpoint = load_model(from_cuda, "cpu")
    assert all(tensor.device.type == "cpu" for tensor in [*on_cpu.state_dict().values(), *checkpoint["model_state"].values()])
    from_cpu = save_checkpoint(checkpoint, tmp_path / "from-cpu.pt")
    on_gpu, _ = load_model(from_cpu, "cuda")
    assert all(tensor.device.type == "cuda" for tensor in on_gpu.state_dict().values())
    for key, tensor in on_gpu.state_dict().items():
        assert torch.equal(tensor.cpu(), result.checkpoint["best_model_state"][key].cpu()), key
    noisy = corrupt(faces(32), CONFIG.noise, make_generator(0))
    with torch.no_grad(), full_fp32():
        assert torch.allclose(on_gpu(noisy.cuda()).cpu(), on_cpu(noisy), rtol=0.0, atol=1e-4)


def test_the_deterministic_setting_repeats_cuda_runs_bit_for_bit_and_restores_the_flags():
    config = replace(CONFIG, deterministic=True, model=replace(CONFIG.model, bottleneck="dense"))  # dense: cuBLAS as well as cuDNN
    data = smooth_splits(train=64, val=16, test=8)
    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())
    during = []
    first = fit(config, data, on_epoch=lambda report: during.append(
        (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled())))
    again = fit(config, data)
    assert during == [(True, False, True)] * config.epochs
    assert (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark, torch.are_deterministic_algorithms_enabled()) == before
    assert torch.equal(weights(first.checkpoint), weights(again.checkpoint))
    assert [h["train_loss"] for h in first.history] == [h["train_loss"] for h in again.history]


def test_fit_in_bf16_on_cuda_learns_without_a_gradient_scaler_and_auto_picks_it_where_supported():
    result = fit(replace(CONFIG, precision="bf16", epochs=4), smooth_splits(train=256, val=64, test=8))
    assert not result.checkpoint["scaler_state"], "a GradScaler ran: bf16 needs none"
    assert all(t.dtype == torch.float32 for t in result.checkpoint["model_state"].values() if t.is_floating_point())
    assert max(epoch["val_psnr"] for epoch in result.history[1:]) > result.history[0]["val_psnr"]
    assert result.best["val_psnr"] > result.history[0]["noisy_psnr"]
    auto = fit(replace(CONFIG, precision="auto", epochs=1), smooth_splits(train=64, val=16, test=8))
    assert auto.checkpoint["config"]["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
