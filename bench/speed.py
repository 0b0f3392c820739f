"""Training speed of ``fit`` on the CPU by number format, memory layout and compilation, side by side in one run.

    python bench/speed.py [--quick] [--threads 1 2] [--variants fp32,bf16,fp32-cl,bf16-cl,fp32-cl-compile,bf16-cl-compile]

One row per model size (base width 16, 32, 64; plain, or with refinement layers and ``mirror``) and thread count:
``fit``'s training images per second in fp32 with the default (contiguous) layout, and every other variant as a ratio
to it, measured in the same run one after the other. A variant's images/s is its last epoch's (the first epoch holds
oneDNN's warm-up, and torch.compile's compilation: its seconds are the ``compile_s`` column, the first epoch's time
over the last's). ``bf16-cl epoch x``: the whole epoch (batches, noise, training, validation on 1 face in 20) of fp32
over bf16 channels-last's, what a trial feels. ``peak``: the share of the CPU's peak that fp32 and bf16 channels-last
reach, where the peak is a large (2048 x 2048) matrix product in that format timed in the same run at the same thread
count, and a training step's work is counted by ``torch.utils.flop_counter`` (forward and backward). ``--quick`` is a
smoke test on tiny sizes; run the full size on an idle machine, not beside other jobs: widths 32
and 64 at ``--faces 512`` (half the default; its last epoch still times 8 steps) took 45 minutes there for all
but its last row (width 64 with refinement at 2 threads).

``--end-to-end`` adds the ``local`` preset run as a new user runs it (``python study/run.py --preset local``, trials and
closing report, each run with its own empty cache directory), once in fp32 and once at ``precision: auto``, one after
the other: the wall time of each, the ratio, and at each salt-and-pepper density the best model's hold-out PSNR
against the switching median's and biharmonic inpainting's (from the report's ``curves.csv``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.ray_nodes import QUIET_RAY  # noqa: E402
from bench.tables import markdown_table  # noqa: E402
from denoise_core.data import CACHE_ENV_VAR, Splits, resolve_data_path  # noqa: E402
from denoise_core.fit import TrainConfig, fit  # noqa: E402
from denoise_core.model import ConvAutoencoder, ModelConfig  # noqa: E402

VARIANTS = ("fp32", "bf16", "fp32-cl", "bf16-cl", "fp32-cl-compile", "bf16-cl-compile")
FULL = {"widths": (16, 32, 64), "faces": 1024, "batch_size": 64, "epochs": 2, "matmul": 2048}
QUICK = {"widths": (4,), "faces": 64, "batch_size": 16, "epochs": 2, "matmul": 256}
VALIDATION_SHARE = 20  # validation faces: 1 in 20 of the training faces, as in the local preset (400 of 8,000)
WHOLE_EPOCH = "bf16-cl"  # the variant fit runs by default on this CPU, timed over its whole epoch too


def faces(count: int, seed: int = 0) -> np.ndarray:
    """Random uint8 48x48 images: speed does not depend on what the pixels show."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, 48, 48), dtype=np.uint8)


def model_config(width: int, extras: bool) -> ModelConfig:
    """The shipped blind model's shape at ``width``, with or without refinement layers and mirror averaging."""
    shape = ModelConfig(base_width=width, bottleneck_size=2 * width, dropout=0.0, skip=True, mask_input=True, gate=True)
    return replace(shape, refine=4, refine_width=2 * width, mirror=True) if extras else shape


def contiguous(model: torch.nn.Module) -> torch.nn.Module:
    """fit's wrap_model hook: undoes the channels-last layout fit uses on the CPU."""
    return model.to(memory_format=torch.contiguous_format)


def measure_variant(config: TrainConfig, data: Splits, variant: str) -> tuple[float, float, float]:
    """``fit``'s last-epoch training images/s for one variant, its first epoch's seconds over the last's, and the last
    epoch's whole seconds (batches, noise, training, validation)."""
    precision, *options = variant.split("-")
    run = replace(config, precision=precision, compile="compile" in options)
    if run.compile:
        torch._dynamo.reset()  # a fresh compile per variant: past dynamo's recompile limit it would silently run eager
    result = fit(run, data, wrap_model=None if "cl" in options else contiguous)
    first, last = result.history[0], result.history[-1]
    return last["images_per_second"], max(0.0, first["seconds"] - last["seconds"]), last["seconds"]


def step_flops(model_config: ModelConfig, batch_size: int) -> float:
    """Floating-point operations of one training step per image (forward and backward, convolutions and products)."""
    model = ConvAutoencoder(model_config)
    images = torch.rand(batch_size, 1, 48, 48)
    with FlopCounterMode(display=False) as counter:
        F.mse_loss(model(images), images).backward()
    return counter.get_total_flops() / batch_size


def matmul_peak(size: int, dtype: torch.dtype, repeats: int = 5) -> float:
    """FLOP/s of a large square matrix product in ``dtype``: the most this CPU's cores sustain in that format."""
    a, b = torch.rand(size, size).to(dtype), torch.rand(size, size).to(dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2.0 * size**3 * repeats / (time.perf_counter() - started)


def measure_row(width: int, extras: bool, threads: int, sizes: dict, variants: tuple[str, ...]) -> dict[str, object]:
    model = model_config(width, extras)
    config = TrainConfig(model=model, noise="sp:0.02-0.5|gauss:5-55", loss="psnr", epochs=sizes["epochs"], batch_size=sizes["batch_size"],
                         patience=sizes["epochs"] + 1, seed=0, device="cpu", num_threads=threads, precision="fp32")
    val_faces = max(16, sizes["faces"] // VALIDATION_SHARE)
    data = Splits(train=faces(sizes["faces"]), val=faces(val_faces, seed=1), test=faces(2, seed=2), test_in_training=np.zeros(2, dtype=bool),
                  val_in_training=np.zeros(val_faces, dtype=bool))
    speeds = {variant: measure_variant(config, data, variant) for variant in variants}
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        peaks = {dtype: matmul_peak(sizes["matmul"], dtype) for dtype in (torch.float32, torch.bfloat16)}
    finally:
        torch.set_num_threads(saved)
    flops = step_flops(model, sizes["batch_size"])
    base = speeds[variants[0]][0]
    row: dict[str, object] = {"width": width, "refine+mirror": extras, "threads": threads, f"{variants[0]} img/s": round(base, 1)}
    row |= {f"{variant} x": round(speeds[variant][0] / base, 2) for variant in variants[1:]}
    row |= {f"{variant} compile_s": round(speeds[variant][1], 1) for variant in variants if variant.endswith("compile")}
    if WHOLE_EPOCH in speeds:
        row[f"{WHOLE_EPOCH} epoch x"] = round(speeds[variants[0]][2] / speeds[WHOLE_EPOCH][2], 2)
    for variant, dtype in (("fp32", torch.float32), ("bf16-cl", torch.bfloat16)):
        if variant in speeds:
            row[f"{variant} peak"] = round(speeds[variant][0] * flops / peaks[dtype], 3)
    return row


END_TO_END_DENSITIES = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7")


def preset_run(preset: str, precision: str, data: str, storage: Path) -> tuple[float, pd.DataFrame]:
    """One ``study/run.py --preset PRESET`` at ``precision`` with a cold cache: its wall seconds and its report's curves."""
    name = f"{preset}-{precision}"
    env = os.environ | QUIET_RAY | {CACHE_ENV_VAR: str(storage / f"cache-{name}")}
    command = [sys.executable, str(REPO_ROOT / "study" / "run.py"), "--preset", preset, "--data", data, "--storage", str(storage),
               "--name", name, "--set", f"train.precision={precision}"]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return seconds, pd.read_csv(storage / name / "report" / "curves.csv")


def end_to_end_rows(preset: str, data: str, precisions: tuple[str, ...] = ("fp32", "auto")) -> list[dict[str, object]]:
    """The preset run in each precision, one after the other: time, ratio to the first, and the best model against the classics."""
    with tempfile.TemporaryDirectory(prefix="facestudy-speed-") as folder:
        runs = {precision: preset_run(preset, precision, data, Path(folder)) for precision in precisions}
    first = runs[precisions[0]][0]
    rows = []
    for precision, (seconds, curves) in runs.items():
        row: dict[str, object] = {"preset": preset, "precision": precision, "minutes": round(seconds / 60, 2), "speed-up": round(first / seconds, 2)}
        rows.append(row | against_classics(curves))
    return rows


def against_classics(curves: pd.DataFrame) -> dict[str, float]:
    """At each density, a report's best learned model (``curves.csv``) and its margin over the switching median and biharmonic inpainting."""
    row = {}
    for condition in END_TO_END_DENSITIES:
        at = curves[curves["condition"] == condition].set_index("model")
        best = at.loc[at["family"] == "learned", "psnr"].max()
        row[f"{condition} best"] = round(best, 2)
        row[f"{condition} vs switching median"] = round(best - at.at["switching_median", "psnr"], 2)
        row[f"{condition} vs biharmonic"] = round(best - at.at["biharmonic_inpaint", "psnr"], 2)
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python bench/speed.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the table, not a measurement")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure (default: 1 2)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, the first is the reference (default: {','.join(VARIANTS)})")
    parser.add_argument("--widths", type=int, nargs="+", help="base widths to measure (default: 16 32 64; --quick: 4)")
    parser.add_argument("--faces", type=int, help="training faces per epoch (default: 1024; --quick: 64); fewer for the slow wide rows")
    parser.add_argument("--end-to-end", action="store_true", help="also run the local preset end to end in fp32 and at auto (cold caches)")
    parser.add_argument("--only-end-to-end", action="store_true", help="the end-to-end comparison alone, without the fit table")
    parser.add_argument("--preset", default="local", help="the preset the end-to-end comparison runs (default: local)")
    parser.add_argument("--data", help="FER2013 file for the end-to-end runs (default: $FER2013_PATH)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.variants.split(",")) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return args


def fit_table(args: argparse.Namespace) -> list[dict[str, object]]:
    sizes, variants = QUICK if args.quick else FULL, tuple(args.variants.split(","))
    sizes = sizes | ({"faces": args.faces} if args.faces else {})
    cases = [(width, extras, threads) for width in args.widths or sizes["widths"] for extras in (False, True) for threads in args.threads]
    rows = []
    for number, case in enumerate(cases, 1):
        rows.append(measure_row(*case, sizes, variants))
        print(f"[{number}/{len(cases)}] {rows[-1]}", file=sys.stderr, flush=True)
    print(f"fit training speed, torch {torch.__version__}, base widths {args.widths or sizes['widths']}, {sizes['faces']} faces an epoch; "
          f"ratios to {variants[0]} in this run")
    print("\n".join(markdown_table(rows)))
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    args = parse_args(argv)
    rows = [] if args.only_end_to_end else fit_table(args)
    if args.end_to_end or args.only_end_to_end:
        data = str(resolve_data_path(args.data))
        end_to_end = end_to_end_rows(args.preset, data)
        print(f"\nthe {args.preset} preset end to end (trials and report, cold caches), fp32 then auto, one after the other")
        print("\n".join(markdown_table(end_to_end)))
        rows += end_to_end
    return rows

if __name__ == "__main__":
    main()
