"""Benchmark of denoise_core against the obvious alternatives, side by side, printed as one table.

    python bench/core.py [--data PATH] [--quick]

Rows: FER2013 CSV parsing (numba parser and .npz cache vs pandas + str.split), noise generation
(torch ``corrupt`` vs per-call NumPy), training throughput (``fit`` vs a bare PyTorch loop) and
PSNR/SSIM (batched torch vs scikit-image per image) and model inference (batch norms folded into the convolutions vs
kept). The data path is ``--data``, else ``$FER2013_PATH``, else ``../shared/fer2013/fer2013.csv.gz`` next to the
repository when present.
"""

from __future__ import annotations

import argparse
import gzip
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.data import DataNotFound, Faces, Splits, load_fer2013, resolve_data_path, split_faces, to_float, write_csv  # noqa: E402
from denoise_core.metrics import psnr, ssim  # noqa: E402
from denoise_core.model import ConvAutoencoder, ModelConfig  # noqa: E402
from denoise_core.noise import corrupt, make_generator  # noqa: E402
from denoise_core.fit import EpochReport, TrainConfig, fit  # noqa: E402

SHARED_FER2013 = REPO_ROOT.parent / "shared" / "fer2013" / "fer2013.csv.gz"
NOISE_SPECS = ("sp:0.05-0.5", "gauss:25", "sp:0.1+gauss:10")
TRAIN_NOISE = "sp:0.05-0.5"
BATCH_SIZE = 128
LR, WEIGHT_DECAY = 2e-3, 1e-4
PLAIN = ModelConfig(base_width=16, bottleneck_size=16, dropout=0.1, skip=False, mask_input=False, gate=False)  # what this benchmark has always timed
TIMED_EPOCHS = 2


@dataclass(frozen=True)
class Sizes:
    noise_batch: int
    noise_repeats: int
    cpu_train: int
    cuda_train: int
    val: int
    metric_batch: int
    skimage_images: int
    naive_parse: bool


FULL = Sizes(noise_batch=4096, noise_repeats=3, cpu_train=1024, cuda_train=4096, val=256, metric_batch=2048, skimage_images=256, naive_parse=True)
QUICK = Sizes(noise_batch=512, noise_repeats=2, cpu_train=256, cuda_train=1024, val=64, metric_batch=256, skimage_images=32, naive_parse=False)


@dataclass(frozen=True)
class Row:
    what: str
    ours: float
    alternative: float | None
    ratio: float | None  # how many times better ours is: alt/ours for times, ours/alt for rates
    target: str
    met: bool | None


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def best_time(function: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` wall-clock runs, in seconds."""
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def best_times(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Fastest of ``repeats`` runs of each, the two alternating so both see the same machine load."""
    best = [math.inf, math.inf]
    for _ in range(repeats):
        for index, function in enumerate((first, second)):
            start = time.perf_counter()
            function()
            best[index] = min(best[index], time.perf_counter() - start)
    return best[0], best[1]


# ---------------------------------------------------------------- parsing


def decompress(path: Path, workdir: Path) -> Path:
    """The uncompressed CSV in ``workdir`` (a copy when the source is already a .csv)."""
    target = workdir / (path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, 16 << 20)
    return target


def warm_up_parser(workdir: Path) -> float:
    """First call of the numba parser on a tiny CSV (loads or compiles it); returns its seconds."""
    tiny = workdir / "tiny.csv"
    rng = np.random.default_rng(0)
    write_csv(tiny, rng.integers(0, 256, (3, 48, 48), dtype=np.uint8), np.array([0, 1, 2], dtype=np.int8))
    start = time.perf_counter()
    load_fer2013(tiny, use_cache=False)
    return time.perf_counter() - start


def naive_parse(csv_path: Path) -> np.ndarray:
    import pandas as pd

    frame = pd.read_csv(csv_path)
    return np.stack([np.array(text.split(), dtype=np.uint8) for text in frame.pixels]).reshape(-1, 48, 48)


def bench_parse(csv_path: Path, workdir: Path, sizes: Sizes, notes: list[str]) -> tuple[list[Row], Faces]:
    warm = warm_up_parser(workdir)
    notes.append(f"parse: numba's first call (cache load or compile) took {warm:.2f} s on a 3-row CSV before timing; it is excluded.")
    faces: list[Faces] = []
    progress("parsing with load_fer2013(use_cache=False), best of 2")
    ours = best_time(lambda: faces.append(load_fer2013(csv_path, use_cache=False)), 2)
    cache_dir = workdir / "cache"
    progress("populating and reading the .npz cache, best of 2")
    load_fer2013(csv_path, cache_dir=cache_dir)
    cached = best_time(lambda: load_fer2013(csv_path, cache_dir=cache_dir), 2)
    naive: float | None = None
    is_csv = csv_path.is_file() and csv_path.suffix == ".csv"
    if sizes.naive_parse and is_csv:
        progress("parsing with pandas.read_csv + str.split (one run, ~10 s)")
        start = time.perf_counter()
        images = naive_parse(csv_path)
        naive = time.perf_counter() - start
        flat = images.reshape(len(images), -1)
        same = np.array_equal(images[flat.min(axis=1) != flat.max(axis=1)], faces[-1].images)
        notes.append(f"parse: pandas result equals ours after dropping constant faces: {same}; ours also returns Usage codes and drops {faces[-1].dropped_constant} blank faces.")
    else:
        notes.append(f"parse: naive pandas parse skipped ({'--quick' if is_csv else 'the source is not a CSV'}).")
    size = f"{csv_path.stat().st_size / 1e6:.0f} MB uncompressed, " if is_csv else ""
    notes.append(f"parse: {csv_path.name}, {size}{len(faces[-1].images)} faces; ours and cached are best of 2, naive is 1 run.")
    rows = [
        Row("parse CSV, s (vs pandas)", ours, naive, naive / ours if naive else None, ">= 10x", naive / ours >= 10 if naive else None),
        Row("load cached .npz, s (vs parse)", cached, ours, ours / cached, "< 0.5 s", cached < 0.5),
    ]
    return rows, faces[-1]


# ---------------------------------------------------------------- noise


def numpy_corrupt(images: np.ndarray, spec: str, seed: int) -> np.ndarray:
    """The obvious NumPy version of ``corrupt``: a fresh default_rng per call, float64 draws, boolean masks."""
    rng = np.random.default_rng(seed)
    count = len(images)
    out = images.copy()
    shape = (count,) + (1,) * (images.ndim - 1)
    parts = dict(part.split(":") for part in spec.split("+"))
    if "gauss" in parts:
        low, _, high = parts["gauss"].partition("-")
        sigma = rng.uniform(float(low), float(high or low), count).reshape(shape)
        out = np.clip(out + rng.normal(0.0, 1.0, images.shape) * (sigma / 255.0), 0.0, 1.0).astype(images.dtype)
    if "sp" in parts:
        low, _, high = parts["sp"].partition("-")
        density = rng.uniform(float(low), float(high or low), count).reshape(shape)
        draw = rng.random(images.shape)
        out[draw < density / 2] = 1.0
        out[(draw >= density / 2) & (draw < density)] = 0.0
    return out


def bench_noise(train: np.ndarray, sizes: Sizes, notes: list[str]) -> list[Row]:
    batch = to_float(train[: sizes.noise_batch])[:, None]
    tensor = torch.from_numpy(batch)
    generator = make_generator(0)
    rows = []
    for spec in NOISE_SPECS:
        progress(f"noise {spec}")
        corrupt(tensor, spec, generator)
        ours, alternative = best_times(lambda: corrupt(tensor, spec, generator), lambda: numpy_corrupt(batch, spec, 0), sizes.noise_repeats)
        rows.append(Row(f"noise {spec}, img/s (vs NumPy)", len(batch) / ours, len(batch) / alternative, alternative / ours, "-", None))
    notes.append(f"noise: {len(batch)} float32 faces (N, 1, 48, 48) on the CPU, best of {sizes.noise_repeats}; NumPy makes a default_rng per call and draws float64.")
    return rows


# ---------------------------------------------------------------- training


def fit_rate(splits: Splits, device: str, train_size: int, val_size: int, between: Callable[[], None]) -> float:
    """images/s of ``fit``: best of its epochs after the first (the warm-up), from ``on_epoch`` reports.

    ``between`` runs after each epoch (outside fit's timed span): the bare loop's epochs go there, so
    the two sides alternate epoch by epoch and see the same machine load.
    """
    config = TrainConfig(
        model=PLAIN, noise=TRAIN_NOISE, loss="mse", epochs=1 + TIMED_EPOCHS, batch_size=BATCH_SIZE, lr=LR,
        weight_decay=WEIGHT_DECAY, train_size=train_size, val_size=val_size, device=device, seed=0,
    )
    reports: list[EpochReport] = []

    def on_epoch(report: EpochReport) -> None:
        reports.append(report)
        between()

    fit(config, splits, on_epoch=on_epoch)
    return max(report.images_per_second for report in reports[1:])


def bare_loop(train: np.ndarray, device: str, train_size: int) -> Callable[[], float]:
    """A bare training loop on the same model: index, scale, corrupt, forward, MSE, AdamW step, nothing else.

    Returns a function that runs one epoch and gives its images/s; on CUDA it uses fp16 autocast and a
    GradScaler like ``fit`` does with TrainConfig's default ``amp=True``.
    """
    target = torch.device(device)
    use_amp = target.type == "cuda"
    torch.manual_seed(0)
    data = torch.from_numpy(np.ascontiguousarray(train[:train_size])).unsqueeze(1).to(target)
    model = ConvAutoencoder(PLAIN).to(target).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    generator = make_generator(0, target)
    batches = len(data) // BATCH_SIZE

    def epoch() -> float:
        sync(target)
        start = time.perf_counter()
        order = torch.randperm(len(data), generator=generator, device=target)
        for step in range(batches):
            clean = data[order[step * BATCH_SIZE:(step + 1) * BATCH_SIZE]].float().div_(255.0)
            noisy = corrupt(clean, TRAIN_NOISE, generator)
            with torch.autocast(target.type, dtype=torch.float16, enabled=use_amp):
                output = model(noisy)
            loss = F.mse_loss(output.float(), clean)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        sync(target)
        return batches * BATCH_SIZE / (time.perf_counter() - start)

    return epoch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(splits: Splits, sizes: Sizes, notes: list[str]) -> list[Row]:
    rows = []
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        size = sizes.cuda_train if device == "cuda" else sizes.cpu_train
        progress(f"training on {device}, {size} faces an epoch: fit and the bare loop, alternating epochs")
        bare_epoch = bare_loop(splits.train, device, size)
        bare_rates: list[float] = []
        ours = fit_rate(splits, device, size, sizes.val, lambda: bare_rates.append(bare_epoch()))
        bare = max(bare_rates[1:])
        rows.append(Row(f"train {device}, img/s (vs bare loop)", ours, bare, ours / bare, ">= 0.95x", ours / bare >= 0.95))
        notes.append(
            f"train {device}: the plain autoencoder (base width 16, bottleneck 16, no skips), batch {BATCH_SIZE}, noise {TRAIN_NOISE}, {size} faces an epoch"
            f"{', fp16 autocast in both' if device == 'cuda' else ''}; each side: 1 warm-up epoch, then best of {TIMED_EPOCHS} epochs "
            f"(ours: fit's EpochReport.images_per_second); the bare loop's epochs run inside fit's on_epoch, so the two alternate epoch by epoch."
        )
    if sizes.cpu_train < 4096:
        notes.append(f"train cpu: {sizes.cpu_train} faces per epoch rather than 4096 (CUDA: {sizes.cuda_train}) so the whole run stays near 2 minutes on 2 cores.")
    return rows


# ---------------------------------------------------------------- metrics


def bench_metrics(val: np.ndarray, sizes: Sizes, notes: list[str]) -> list[Row]:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    clean = torch.from_numpy(to_float(np.resize(val, (sizes.metric_batch, 48, 48))))[:, None]
    noisy = corrupt(clean, "gauss:25", make_generator(1))
    clean_np, noisy_np = clean[: sizes.skimage_images, 0].numpy(), noisy[: sizes.skimage_images, 0].numpy()
    progress(f"metrics: batched torch on {len(clean)} faces, scikit-image on {len(clean_np)}")
    rows = []
    checks = []
    for name, ours_fn, theirs_fn, target in (
        ("PSNR", psnr, lambda a, b: peak_signal_noise_ratio(b, a, data_range=1.0), None),
        ("SSIM", ssim, lambda a, b: structural_similarity(a, b, data_range=1.0), 20.0),
    ):
        reference = np.array([theirs_fn(a, b) for a, b in zip(noisy_np, clean_np)])
        difference = np.abs(ours_fn(noisy[: len(clean_np)], clean[: len(clean_np)]).numpy() - reference).max()
        checks.append(f"{name} max |ours - skimage| = {difference:.1e}")
        ours_cpu, theirs = best_times(lambda: ours_fn(noisy, clean), lambda: [theirs_fn(a, b) for a, b in zip(noisy_np, clean_np)], 3)
        theirs_rate = len(clean_np) / theirs
        rates = {"cpu": len(clean) / ours_cpu}
        if torch.cuda.is_available():
            pred, true, device = noisy.cuda(), clean.cuda(), torch.device("cuda")
            ours_fn(pred, true)
            rates["cuda"] = len(pred) / best_time(lambda: (ours_fn(pred, true), sync(device)), 3)
        for device, rate in rates.items():
            ratio = rate / theirs_rate
            rows.append(Row(
                f"{name} {device}, img/s (vs skimage loop)", rate, theirs_rate, ratio,
                f">= {target:g}x" if target else "-", ratio >= target if target else None,
            ))
    notes.append(
        f"metrics: ours batched over {len(clean)} faces, skimage per image over {len(clean_np)} faces scaled to a rate, best of 3 "
        f"alternating; pred = clean + gauss:25; " + "; ".join(checks) + "."
    )
    return rows


# ---------------------------------------------------------------- inference


def bench_inference(val: np.ndarray, sizes: Sizes, notes: list[str]) -> list[Row]:
    """The shipped blind model denoising as every score runs it (``model_denoiser``: batch norms folded, channels-last)
    against the same model with its batch norms kept (channels-last, the path before folding), fp32 on the CPU."""
    from denoise_core.checkpoint import load_model
    from denoise_core.denoise import SHIPPED_MODEL
    from denoise_core.evaluate import model_denoiser
    from denoise_core.inference import default_batch, denoise_tensor, for_inference

    model, _ = load_model(str(SHIPPED_MODEL), "cpu")
    faces = torch.from_numpy(to_float(np.resize(val, (sizes.metric_batch, 48, 48))))[:, None]
    noisy = corrupt(faces, "sp:0.3", make_generator(2))[:, 0].numpy()
    folded = model_denoiser(model, "cpu")
    unfolded = model.eval().to(memory_format=torch.channels_last)
    kept = lambda: denoise_tensor(unfolded, torch.from_numpy(noisy)[:, None]).numpy()[:, 0]  # noqa: E731
    progress(f"inference: {SHIPPED_MODEL.name} on {len(noisy)} faces, folded against kept batch norms")
    difference = float(np.abs(folded(noisy) - kept()).max())
    ours, theirs = best_times(lambda: folded(noisy), kept, 5)
    notes.append(f"inference: {SHIPPED_MODEL.name}, fp32, {torch.get_num_threads()} thread(s), sp:0.3 on {len(noisy)} validation faces, best of 5 "
                 f"alternating; max |folded - kept| = {difference:.1e}.")
    rows = [Row("denoise cpu, img/s (vs batch norms kept)", len(noisy) / ours, len(noisy) / theirs, theirs / ours, "-", None)]
    threads = torch.get_num_threads()
    if threads == 1:
        notes.append("inference side by side: skipped, torch runs 1 thread on this machine")
        return rows
    inference_model = for_inference(model, "cpu")
    batches = torch.from_numpy(noisy)[:, None]

    def one_at_a_time() -> torch.Tensor:  # every batch on all the threads, as denoise_tensor ran before
        with torch.no_grad():
            return torch.cat([inference_model(batch).float() for batch in batches.split(default_batch(batches.device))])

    same = torch.equal(denoise_tensor(inference_model, batches), one_at_a_time())
    ours, theirs = best_times(lambda: denoise_tensor(inference_model, batches), one_at_a_time, 5)
    notes.append(f"inference side by side: {threads} batches of {default_batch(batches.device)} at once, a torch thread each, against one "
                 f"batch at a time on {threads} threads; outputs {'equal bit for bit' if same else 'DIFFERENT'}.")
    rows.append(Row(f"denoise cpu {threads} threads, img/s (vs a batch at a time)", len(noisy) / ours, len(noisy) / theirs, theirs / ours, "-", None))
    return rows


# ---------------------------------------------------------------- report


def machine_lines(load: float) -> list[str]:
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs ({affinity} usable), Python {platform.python_version()}, "
        f"load average at start {load:.1f} (1 min)",
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads (default, same for ours and the alternative), numpy {np.__version__}",
    ]
    if torch.cuda.is_available():
        lines.append(f"CUDA: {torch.cuda.get_device_name(0)}")
    else:
        lines.append("CUDA: not available (CPU rows only)")
    return lines


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def table(rows: list[Row]) -> list[str]:
    header = ("what", "ours", "alternative", "ratio", "target", "met?")
    cells = [
        (r.what, fmt(r.ours), fmt(r.alternative), f"{r.ratio:.2f}x" if r.ratio is not None else "-", r.target,
         "-" if r.met is None else ("yes" if r.met else "NO"))
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    line = lambda values: "| " + " | ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths))) + " |"  # noqa: E731
    return [line(header), "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"] + [line(c) for c in cells]


def data_path(cli_value: str | None) -> Path:
    if not cli_value and not os.environ.get("FER2013_PATH") and SHARED_FER2013.exists():
        cli_value = str(SHARED_FER2013)
    return resolve_data_path(cli_value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 .csv, .csv.gz, .tar.gz or image folder (default: $FER2013_PATH)")
    parser.add_argument("--quick", action="store_true", help="small sizes and no pandas parse: a smoke run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    try:
        path = data_path(args.data)
    except DataNotFound as error:
        raise SystemExit(f"bench/core.py: {error}") from None
    notes: list[str] = []
    started = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        workdir = Path(tmp)
        if path.is_file() and path.name.endswith((".csv", ".csv.gz")):
            progress(f"decompressing or copying {path} to a temporary folder (not timed)")
            csv_path = decompress(path, workdir)
        else:
            csv_path = path
            notes.append(f"parse: {path} is not a .csv(.gz); timed as given.")
        rows, faces = bench_parse(csv_path, workdir, sizes, notes)
    splits = split_faces(faces)
    rows += bench_noise(splits.train, sizes, notes)
    rows += bench_train(splits, sizes, notes)
    rows += bench_metrics(splits.val, sizes, notes)
    rows += bench_inference(splits.val, sizes, notes)
    notes.append("ratio: how many times better ours is (alternative/ours for seconds, ours/alternative for img/s).")
    print("\n".join(machine_lines(load)))
    print(f"data: {path}{' (--quick)' if args.quick else ''}")
    print()
    print("\n".join(table(rows)))
    print()
    print("\n".join(f"{i}. {note}" for i, note in enumerate(notes, 1)))
    print(f"\ntotal wall time {time.perf_counter() - started:.0f} s; load average at the end {os.getloadavg()[0]:.1f} (1 min)")


if __name__ == "__main__":
    main()
