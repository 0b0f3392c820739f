"""Section d: a shipped model's recipe trained on the GPU and scored on the fixed hold-out beside the shipped model."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench import REPO_ROOT
from bench.gpu_check.report import Section, progress
from denoise_core.checkpoint import export_model, save_checkpoint
from denoise_core.data import Splits
from denoise_core.denoise import SHIPPED_IMPULSE_MODEL
from denoise_core.evaluate import evaluate_on_holdout, file_denoiser
from denoise_core.fit import EpochReport, config_from_dict, fit
from denoise_core.holdout import holdout_for
from denoise_core.settings import load_yaml_file


RECIPE = REPO_ROOT / "models" / "fer2013-impulse.yaml"
TRAINED_MODEL_NAME = "fer2013-impulse-gpu.pt"
RECIPE_CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9")
SCORE_RESERVE_S = 35.0  # what scoring two models on the hold-out needs after the recipe's last epoch


def bench_recipe(deadline: float, splits: Splits, epochs: int, out_dir: Path) -> Section:
    section = Section("d", f"{RECIPE.relative_to(REPO_ROOT)} trained on the GPU, against the shipped {SHIPPED_IMPULSE_MODEL.name}")
    config = config_from_dict({**load_yaml_file(RECIPE), "epochs": epochs, "device": "cuda", "amp": True})
    stop_at = deadline - SCORE_RESERVE_S

    def on_epoch(report: EpochReport) -> bool:
        progress(f"d: epoch {report.epoch}: val PSNR {report.val_psnr:.2f} dB, {report.images_per_second:,.0f} img/s")
        return time.perf_counter() > stop_at

    progress(f"d: training on {len(splits.train)} faces for up to {epochs} epochs")
    result = fit(config, splits, on_epoch=on_epoch)
    model_path = save_checkpoint(export_model(result.checkpoint), out_dir / TRAINED_MODEL_NAME)
    ran = len(result.history)
    with tempfile.TemporaryDirectory(prefix="gpu-holdout-") as cache_dir:
        progress(f"d: scoring on the hold-out ({len(splits.test_unique)} faces)")
        holdout = holdout_for(splits.test_unique, cache_dir, RECIPE_CONDITIONS)
        trained = evaluate_on_holdout(file_denoiser(str(model_path), "cuda"), holdout).set_index("condition")
        shipped = evaluate_on_holdout(file_denoiser(str(SHIPPED_IMPULSE_MODEL), "cuda"), holdout).set_index("condition")
    for condition in holdout.conditions:
        ours, theirs = trained.loc[condition], shipped.loc[condition]
        section.rows.append({
            "condition": condition, "noisy PSNR": round(float(ours["noisy_psnr"]), 2), "GPU-trained PSNR": round(float(ours["psnr"]), 2),
            "shipped PSNR": round(float(theirs["psnr"]), 2), "PSNR difference": f"{float(ours['psnr'] - theirs['psnr']):+.2f}",
            "GPU-trained SSIM": round(float(ours["ssim"]), 4), "shipped SSIM": round(float(theirs["ssim"]), 4), "faces": int(ours["faces"]),
        })
    rates = [h["images_per_second"] for h in result.history]
    section.notes += [
        f"training: {ran} of {epochs} epochs" + (" (stopped early: budget)" if ran < epochs and not result.stopped_early else "")
        + f", {result.seconds:.1f} s, {float(np.mean(rates)):,.0f} train img/s (mean over epochs), best epoch {result.best_epoch} "
        f"(val PSNR {result.best['val_psnr']:.2f} dB), {len(splits.train):,} training and {len(splits.val):,} validation faces, "
        f"batch {config.batch_size}, loss {config.loss}, noise {config.noise}, fp16 AMP",
        f"hold-out: {len(holdout.clean):,} PrivateTest faces not in Training, corrupted once on the CPU (denoise_core.holdout), "
        "mean per-image PSNR (dB) and SSIM",
        "the shipped model is this recipe's MSE stage on all 28,698 Training faces followed by a PSNR-loss fine-tune (models/README.md); "
        f"the GPU-trained model, saved as {TRAINED_MODEL_NAME}, is the recipe alone on the faces present here",
    ]
    return section

