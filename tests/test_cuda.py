"""Training on a CUDA GPU: run where one is present, skipped elsewhere."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from denoise_core.checkpoint import load_checkpoint, save_checkpoint
from denoise_core.model import ModelConfig
from denoise_core.train import TrainConfig, fit
from synthetic import smooth_splits

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CONFIG = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=8, dropout=0.1), noise="sp:0.2", epochs=2, batch_size=16,
                     lr=3e-3, seed=0, device="cuda", amp=False)


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
