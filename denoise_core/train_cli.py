"""``python -m denoise_core.train``: train one model locally, with a progress bar and TensorBoard.

The run directory gets ``config.yaml`` (the resolved settings), ``last.pt`` (the full training state,
every epoch), ``model.pt`` (the best model so far, what ``denoise`` loads), ``history.csv`` and the
TensorBoard event files. An existing run directory is never overwritten: ``--resume`` continues it.
"""

from __future__ import annotations

import argparse
import csv
import logging
from pathlib import Path

import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from denoise_core.checkpoint import export_model, load_checkpoint, save_checkpoint
from denoise_core.cli import run_cli, setup_logging
from denoise_core.data import load_splits
from denoise_core.tblog import write_epoch, write_hparams
from denoise_core.train import EpochReport, FitResult, TrainConfig, config_from_dict, config_to_dict, fit, with_overrides

log = logging.getLogger("denoise_core.train")

FLAGS = {  # flag -> TrainConfig field (model_* go to the model config)
    "epochs": int, "train_size": int, "val_size": int, "batch_size": int, "lr": float, "weight_decay": float,
    "loss": str, "noise": str, "val_noise": str, "patience": int, "seed": int, "device": str, "schedule": str,
    "num_threads": int, "init": str, "model_base_width": int, "model_bottleneck": str, "model_bottleneck_size": int,
    "model_dropout": float, "model_stages": int, "model_refine": int, "model_refine_width": int,
}
SWITCHES = ("skip", "residual", "mask_input", "gate", "switching", "mirror")  # model options turned on by a bare flag


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m denoise_core.train", description="Train one denoising autoencoder on FER2013.")
    parser.add_argument("--data", help="FER2013 file or folder (default: $FER2013_PATH)")
    parser.add_argument("--out", required=True, help="run directory (must not exist, unless --resume)")
    parser.add_argument("--config", help="YAML file with training settings (flags override it)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--grid-every", type=int, default=5, help="log an image grid to TensorBoard every N epochs")
    parser.add_argument("--verbose", action="store_true")
    for name, kind in FLAGS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, dest=name, default=None)
    for name in SWITCHES:
        parser.add_argument(f"--model-{name.replace('_', '-')}", dest=f"model_{name}", action="store_true", default=None)
    return parser.parse_args(argv)


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig()
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        base = config_from_dict(yaml.safe_load(path.read_text()) or {})
    overrides = {k: getattr(args, k) for k in [*FLAGS, *(f"model_{name}" for name in SWITCHES)] if getattr(args, k) is not None}
    return with_overrides(base, **overrides)


def train_run(config: TrainConfig, data_path: str | None, run_dir: Path, resume: bool = False, grid_every: int = 5) -> FitResult:
    """Train into ``run_dir``; refuses to touch a non-empty directory unless resuming it."""
    previous = None
    if resume:
        last = run_dir / "last.pt"
        if not last.is_file():
            raise FileNotFoundError(f"nothing to resume: {last} does not exist")
        previous = load_checkpoint(last)
        config = with_overrides(config_from_dict(previous["config"]), epochs=config.epochs)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run directory {run_dir} already holds a run; choose a new --out or pass --resume")
    splits = load_splits(data_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    log.info("training %s", config)
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    progress = tqdm(total=config.epochs, initial=previous["epoch"] if previous else 0, desc="epochs", unit="epoch")

    def on_epoch(report: EpochReport) -> None:
        save_checkpoint(report.checkpoint, run_dir / "last.pt")
        if report.is_best:
            save_checkpoint(export_model(report.checkpoint), run_dir / "model.pt")
        write_epoch(writer, report, grid_every)
        _append_history(run_dir / "history.csv", report.metrics())
        progress.update(1)
        progress.set_postfix(val_psnr=f"{report.val_psnr:.2f}", noisy=f"{report.noisy_psnr:.2f}", loss=f"{report.train_loss:.4f}")

    try:
        result = fit(config, splits, on_epoch=on_epoch, resume=previous)
    finally:
        progress.close()
    params = {k: v for k, v in config_to_dict(config).items() if k != "model"} | {f"model_{k}": v for k, v in config_to_dict(config)["model"].items()}
    write_hparams(writer, params, {k: result.best[k] for k in ("val_loss", "val_psnr", "val_ssim")})
    writer.close()
    log.info("best epoch %d: val PSNR %.2f dB (noisy %.2f), SSIM %.4f; model at %s", result.best_epoch,
             result.best["val_psnr"], result.best["noisy_psnr"], result.best["val_ssim"], run_dir / "model.pt")
    return result


def _append_history(path: Path, metrics: dict[str, float]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(metrics))
        if new:
            writer.writeheader()
        writer.writerow(metrics)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(args.verbose)
    run_cli(lambda: train_run(resolve_config(args), args.data, Path(args.out), args.resume, args.grid_every) and None, "denoise_core.train")
