"""``python -m denoise_core.train``: train one model locally, with a progress bar and TensorBoard.

The run directory gets ``config.yaml`` (the resolved settings), ``last.pt`` (the full training state,
every epoch), ``model.pt`` (the best model so far, what ``denoise`` loads), ``history.csv`` and the
TensorBoard event files. An existing run directory is never overwritten: ``--resume`` continues it. A run
that failed before its first checkpoint (a bad setting, a divergence, a full disk) leaves only files that
the next start may replace, so retrying with the same ``--out`` works.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from denoise_core.checkpoint import export_model, load_checkpoint, save_checkpoint
from denoise_core.cli import ArgumentParser, run_cli, setup_logging
from denoise_core.data import load_splits
from denoise_core.errors import InputError, MissingFile, OutputExists
from denoise_core.files import write_atomic
from denoise_core.inference import resolve_device
from denoise_core.tblog import write_epoch, write_hparams
from denoise_core.settings import Flag, Layers, add_flags, add_layer_arguments, assemble, read_layers, to_dict
from denoise_core.fit import EpochReport, FitResult, TrainConfig, config_from_dict, config_to_dict, fit, with_resolved_precision

log = logging.getLogger("denoise_core.train")
STARTED_FILES = ("config.yaml", "tensorboard", "history.csv")  # what a run writes before its first checkpoint


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[Flag]]:
    parser = ArgumentParser(
        prog="python -m denoise_core.train", description="Train one denoising autoencoder on FER2013.",
        epilog="Settings: TrainConfig defaults < --config FILE < flags < --set KEY=VALUE. Values are YAML (1e-3, null, true); "
               "a text setting's flag (--noise, --init, --device) takes its value as written. On --resume the run's saved "
               f"config.yaml is the base and only {', '.join(TrainConfig.RESUMABLE)} may change.")
    parser.add_argument("--data", help="FER2013 file or folder (default: $FER2013_PATH)")
    parser.add_argument("--out", required=True, help="run directory (must not exist, unless --resume)")
    add_layer_arguments(parser, "YAML file with training settings (flags override it)", "--set model.dropout=0.2")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--grid-every", type=int, default=5, help="log an image grid to TensorBoard every N epochs, 0 for none (default: 5)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    flags = add_flags(parser, TrainConfig)
    return parser.parse_args(argv), flags


def resolve_config(file_values: Mapping[str, Any], assignments: Sequence[tuple[str, Any]], saved: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults (or a resumed run's saved config) < file < assignments; a resume may change only ``TrainConfig.RESUMABLE``."""
    layers = Layers(file_values, assignments)
    if saved is None:
        return assemble(TrainConfig, to_dict(TrainConfig()), layers)
    return assemble(TrainConfig, to_dict(config_from_dict(saved)), layers,
                    resume=("the run's checkpoint", "start a new run with another --out"))


def train_run(layers: Layers, data_path: str | None, run_dir: Path, resume: bool = False, grid_every: int = 5) -> FitResult:
    """Train into ``run_dir``; refuses to touch a non-empty directory unless resuming it."""
    if grid_every < 0:
        raise InputError(f"--grid-every must be >= 0 (0: no image grids), got {grid_every}")
    previous = None
    if resume:
        last = run_dir / "last.pt"
        if not last.is_file():
            hint = "; the run failed before its first epoch ended, so start it again without --resume" if run_dir.is_dir() else ""
            raise MissingFile(f"nothing to resume: {last} does not exist{hint}")
        previous = load_checkpoint(last)
        config = resolve_config(layers.file, layers.assignments, saved=previous["config"])
    else:
        config = resolve_config(layers.file, layers.assignments)
    resolve_device(config.device)  # an unknown device fails here, before the run directory is touched
    config = with_resolved_precision(config)  # config.yaml and the checkpoints record what auto chose
    if config.init and not resume:
        load_checkpoint(config.init)  # a refused or damaged init file fails here, before the run directory is touched
    if not resume:
        _claim_run_dir(run_dir)
    splits = load_splits(data_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False).encode())
    log.info("training %s", config)
    writer = SummaryWriter(str(run_dir / "tensorboard"))
    progress = tqdm(total=config.epochs, initial=previous["epoch"] if previous else 0, desc="epochs", unit="epoch", disable=None)

    def on_epoch(report: EpochReport) -> None:
        save_checkpoint(report.checkpoint, run_dir / "last.pt")
        if report.is_best:
            save_checkpoint(export_model(report.checkpoint), run_dir / "model.pt")
        write_epoch(writer, report, grid_every)
        _append_history(run_dir / "history.csv", report.metrics())
        progress.update(1)
        if progress.disable:  # no terminal: one log line per epoch instead of a progress bar
            log.info("epoch %d/%d: val PSNR %.2f dB (noisy %.2f), train loss %.4f", report.epoch, config.epochs, report.val_psnr,
                     report.noisy_psnr, report.train_loss)
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


def _claim_run_dir(run_dir: Path) -> None:
    """Refuse a directory holding a run or anything else; clear what a run that failed before its first checkpoint left."""
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputExists(f"--out {run_dir} is a file; choose a directory path for the run")
    entries = sorted(run_dir.iterdir()) if run_dir.is_dir() else []
    if not entries:
        return
    if (run_dir / "last.pt").exists() or (run_dir / "model.pt").exists():
        raise OutputExists(f"run directory {run_dir} already holds a run; choose a new --out or pass --resume")
    foreign = [entry.name for entry in entries if entry.name not in STARTED_FILES]
    if foreign:
        raise OutputExists(f"run directory {run_dir} holds other files ({', '.join(foreign[:3])}); choose an empty or new --out")
    log.warning("%s holds what a run that failed before its first checkpoint left (%s); replacing it", run_dir, ", ".join(e.name for e in entries))
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _append_history(path: Path, metrics: dict[str, float]) -> None:
    """One more row, written whole with the rows before it: a full disk never leaves half a row."""
    rows = io.StringIO()
    writer = csv.DictWriter(rows, fieldnames=list(metrics))
    if not path.exists():
        writer.writeheader()
    writer.writerow(metrics)
    write_atomic(path, (path.read_bytes() if path.exists() else b"") + rows.getvalue().encode())


def main(argv: list[str] | None = None) -> None:
    args, flags = parse_args(argv)
    setup_logging(args.verbose)

    def run() -> None:
        train_run(read_layers(args, flags), args.data, Path(args.out), args.resume, args.grid_every)

    run_cli(run, "denoise_core.train")


if __name__ == "__main__":
    main()
