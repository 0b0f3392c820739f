"""The prepared GPU check: the cuda tests, training speed, trials sharing one GPU, and a shipped recipe at GPU scale.

The GPU machine has torch but neither Ray nor Optuna (nor bm3d), so this script uses denoise_core alone and packs
trials as plain processes, the way fractional GPUs place them. It keeps to ``--budget-s`` (default 420 s, so the
whole run stays under 8 minutes): each section gets what the later ones leave it, and what does not fit is
skipped or shortened, saying so in its table. Every section prints one Markdown table; all of them go to
``--out`` (Markdown) and a CSV beside it, rewritten after each section.

Sections: (a) ``pytest -m cuda`` on tests/test_cuda.py and tests/test_ddp.py; (b) training images/s of the
smallest, default and largest models of the ``full`` search at batch 128, 512 and 2048: eager, eager on
channels-last weights, and ``torch.compile``, with peak GPU memory; (c) 1, 2, 4 and 8 processes each running
``fit`` on 28,698 synthetic faces at once; (d) ``models/fer2013-impulse.yaml``'s recipe trained on the GPU and
scored on the fixed hold-out beside the shipped ``models/fer2013-impulse.pt``.

The real faces travel as one compact file: every PublicTest and PrivateTest face and the first 13,000 Training
faces (44.5 MB; the carried tree may hold 64 MiB). Pack it here, on the CPU, under the repository (``*.npz`` is
git-ignored, so the device tool must be told to carry the file)::

    python bench/gpu.py --pack-data ../shared/fer2013/fer2013.csv.gz .gpudata/fer2013-faces.npz

then, on the GPU machine, from the repository root (carrying ``.gpudata/fer2013-faces.npz``)::

    python3 bench/gpu.py --faces-npz .gpudata/fer2013-faces.npz --out $OUT/gpu-bench.md

It writes ``gpu-bench.md``, ``gpu-bench.csv``, ``gpu-bench-pytest.log`` and the trained ``fer2013-impulse-gpu.pt``
beside ``--out``. ``--sections`` runs a subset (e.g. ``--sections bd``); ``--data`` takes any FER2013 file
instead of the packed one.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import queue
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.checkpoint import export_model, save_checkpoint  # noqa: E402
from denoise_core.data import PRIVATE_TEST, TRAINING, DataError, DataNotFound, Faces, Splits, load_fer2013, load_splits, split_faces  # noqa: E402
from denoise_core.denoise import SHIPPED_IMPULSE_MODEL  # noqa: E402
from denoise_core.evaluate import evaluate_on_holdout, file_denoiser  # noqa: E402
from denoise_core.holdout import holdout_for  # noqa: E402
from denoise_core.model import ConvAutoencoder, ModelConfig, count_parameters, model_config_from_dict  # noqa: E402
from denoise_core.noise import corrupt, make_generator  # noqa: E402
from denoise_core.settings import load_yaml_file  # noqa: E402
from denoise_core.fit import LOSSES, EpochReport, TrainConfig, config_from_dict, config_to_dict, fit  # noqa: E402

FULL_PRESET = REPO_ROOT / "study" / "presets" / "full.yaml"
RECIPE = REPO_ROOT / "models" / "fer2013-impulse.yaml"
TRAINED_MODEL_NAME = "fer2013-impulse-gpu.pt"
RECIPE_CONDITIONS = ("sp:0.1", "sp:0.3", "sp:0.5", "sp:0.7", "sp:0.9")
SECTIONS = "abcd"
RESERVE_S = {"a": 110.0, "b": 140.0, "c": 90.0, "d": 80.0}  # what a section is promised before the earlier ones start
PYTEST_COMMAND = ("-m", "pytest", "-m", "cuda", "-q", "tests/test_cuda.py", "tests/test_ddp.py", "-p", "no:cacheprovider")
BATCH_SIZES = (128, 512, 2048)
VARIANTS = ("eager", "channels-last", "compile")
WARMUP_STEPS, TIMED_STEPS = 5, 20
POOL_FACES = 8192
COMPILE_GUESS_S = 60.0  # until one compile has been seen
SHARE_COUNTS = (1, 2, 4, 8)
SHARE_TRAIN, SHARE_VAL = 28_698, 3_589  # FER2013's Training and PublicTest sizes
SCORE_RESERVE_S = 35.0  # what scoring two models on the hold-out needs after the recipe's last epoch
PACK_TRAIN_FACES = 13_000  # keeps the packed file under PACK_LIMIT_BYTES with FER2013's 7,177 test faces
PACK_LIMIT_BYTES = 45e6

# The extremes of the ``full`` search (study/presets/full.yaml): fewest and most of base_width, stages and
# bottleneck_size, and the largest also takes every option that adds work (skip, gate, the deepest refinement, mirror).
SMALLEST = ModelConfig(stages=2, base_width=16, bottleneck="channels", bottleneck_size=8)
LARGEST = ModelConfig(stages=4, base_width=64, bottleneck="dense", bottleneck_size=128, skip=True, mask_input=True, gate=True,
                      refine=6, refine_width=32, mirror=True)


@dataclass
class Section:
    """One table of the report, with the lines that say how it was measured and what was cut."""

    key: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Budget:
    """Wall-clock seconds from the start; a section's deadline leaves the later sections their reserves."""

    start: float
    seconds: float

    @property
    def end(self) -> float:
        return self.start + self.seconds

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def deadline(self, later: str) -> float:
        return self.end - sum(RESERVE_S[key] for key in later)


def progress(message: str) -> None:
    print(f"[gpu] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- tables


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    return str(value).replace("|", "\\|")


def markdown_table(rows: list[dict[str, Any]]) -> list[str]:
    """Columns in order of first appearance; numbers right-aligned, a missing cell is '-'."""
    if not rows:
        return ["(no rows)"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[fmt(row.get(column)) for column in columns] for row in rows]
    numeric = [all(isinstance(row.get(column), (int, float)) or row.get(column) is None for row in rows) for column in columns]
    widths = [max(len(column), *(len(line[index]) for line in cells)) for index, column in enumerate(columns)]
    line = lambda values: "| " + " | ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric)) + " |"  # noqa: E731
    rule = "|" + "|".join("-" * (w + 1) + ":" if n else "-" * (w + 2) for w, n in zip(widths, numeric)) + "|"
    return [line(columns), rule] + [line(values) for values in cells]


def render(section: Section) -> list[str]:
    return [f"## {section.key}. {section.title}", "", *markdown_table(section.rows), "", *(f"- {note}" for note in section.notes), ""]


def write_report(out: Path, header: list[str], sections: list[Section]) -> None:
    import pandas as pd

    out.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# GPU check (bench/gpu.py)", "", *(f"- {line}" for line in header), ""]
    for section in sections:
        lines += render(section)
    out.write_text("\n".join(lines))
    frames = [pd.DataFrame(section.rows).assign(section=section.key) for section in sections if section.rows]
    if frames:
        table = pd.concat(frames, ignore_index=True)
        table[["section", *[c for c in table.columns if c != "section"]]].to_csv(out.with_suffix(".csv"), index=False)


def machine_lines(args: argparse.Namespace) -> list[str]:
    props = torch.cuda.get_device_properties(0)
    return [
        f"GPU: {props.name}, {props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor}, {props.multi_processor_count} SMs",
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs",
        f"budget {args.budget_s:.0f} s; sections {args.sections}; started {time.strftime('%Y-%m-%d %H:%M:%S')}",
    ]


# ---------------------------------------------------------------- data


def pack_faces(images: np.ndarray, usage: np.ndarray, train_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Every PublicTest and PrivateTest face, the first ``train_faces`` Training faces, and every Training face that
    is a copy of a PrivateTest face, in file order: ``split_faces`` then flags the same test faces as on the whole
    file, so the hold-out (``test_unique``) is the one every other report scores."""
    training = usage == TRAINING
    test_bytes = {image.tobytes() for image in images[usage == PRIVATE_TEST]}
    copies = np.zeros(len(images), dtype=bool)
    copies[training] = [image.tobytes() in test_bytes for image in images[training]]
    keep = ~training | (np.cumsum(training) <= train_faces) | copies
    return images[keep], usage[keep]


def without_constant(images: np.ndarray, usage: np.ndarray, source: str) -> Faces:
    flat = images.reshape(len(images), -1)
    constant = flat.min(axis=1) == flat.max(axis=1)
    return Faces(images=images[~constant], usage=usage[~constant], source=source, dropped_constant=int(constant.sum()))


def read_faces_npz(path: Path) -> Faces:
    """``images`` (N, 48, 48) uint8 and ``usage`` (N,) int8, as in the parse cache and in ``--pack-data`` files."""
    with np.load(path) as stored:
        if "images" not in stored or "usage" not in stored:
            raise SystemExit(f"bench/gpu.py: {path} holds {sorted(stored.files)}; expected arrays 'images' and 'usage'")
        images, usage = stored["images"], stored["usage"]
    if images.dtype != np.uint8 or images.shape[1:] != (48, 48) or usage.shape != (len(images),):
        raise SystemExit(f"bench/gpu.py: {path}: expected images (N, 48, 48) uint8 and usage (N,), "
                         f"got {images.shape} {images.dtype} and {usage.shape}")
    return without_constant(images, usage.astype(np.int8), str(path))


def pack_data(source: Path, target: Path, train_faces: int) -> int:
    """Write the compact file for travel; returns its size in bytes."""
    faces = read_faces_npz(source) if source.suffix == ".npz" else load_fer2013(source)
    images, usage = pack_faces(faces.images, faces.usage, train_faces)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as handle:  # a file handle, so numpy adds no second .npz suffix
        np.savez_compressed(handle, images=images, usage=usage.astype(np.int8))
    size = target.stat().st_size
    counts = np.bincount(usage, minlength=3)
    print(f"wrote {target}: {len(images)} faces ({counts[0]} Training, {counts[1]} PublicTest, {counts[2]} PrivateTest), "
          f"{size / 1e6:.1f} MB ({size / 2**20:.1f} MiB)")
    if size > PACK_LIMIT_BYTES:
        print(f"warning: over {PACK_LIMIT_BYTES / 1e6:.0f} MB; pass a smaller --train-faces so the carried tree stays under 64 MiB")
    if target.resolve().is_relative_to(REPO_ROOT) and subprocess.run(["git", "check-ignore", "-q", str(target)], cwd=REPO_ROOT).returncode != 0:
        print(f"warning: {target} is inside the repository and not git-ignored; keep data out of commits")
    return size


def smooth_faces(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (count, 48, 48): a random gradient plus three Gaussian blobs, like tests/synthetic.py, vectorised."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:48].astype(np.float32) / np.float32(47.0)
    faces = np.empty((count, 48, 48), dtype=np.uint8)
    for start in range(0, count, 4096):
        n = min(4096, count - start)
        a, b, c = rng.uniform(-0.4, 0.4, (3, n, 1, 1)).astype(np.float32)
        image = 0.5 + a * xx + b * yy + c * xx * yy
        for _ in range(3):
            cy, cx = rng.uniform(0.2, 0.8, (2, n, 1, 1)).astype(np.float32)
            radius, amplitude = rng.uniform(0.05, 0.15, (n, 1, 1)).astype(np.float32), rng.uniform(-0.4, 0.4, (n, 1, 1)).astype(np.float32)
            image += amplitude * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius * radius))
        faces[start:start + n] = np.clip(np.round(image * 255), 1, 254).astype(np.uint8)
    return faces


def synthetic_splits(train: np.ndarray, val: np.ndarray) -> Splits:
    return Splits(train=train, val=val, test=val[:0], test_in_training=np.zeros(0, dtype=bool), val_in_training=np.zeros(len(val), dtype=bool))


# ---------------------------------------------------------------- a. the cuda tests


def run_cuda_tests(timeout: float, log_path: Path) -> Section:
    section = Section("a", "cuda tests: " + " ".join(("python",) + PYTEST_COMMAND))
    if timeout < 20:
        section.rows.append({"status": "skipped: budget"})
        return section
    progress(f"a: pytest -m cuda (at most {timeout:.0f} s)")
    started = time.perf_counter()
    try:
        result = subprocess.run([sys.executable, *PYTEST_COMMAND], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
        output, code = result.stdout + result.stderr, result.returncode
    except subprocess.TimeoutExpired as expired:
        output, code = text_of(expired.stdout) + text_of(expired.stderr), None
        section.notes.append(f"stopped after {timeout:.0f} s (budget); counts are from what had finished")
    log_path.write_text(output)
    counts = pytest_counts(output)
    section.rows.append({**counts, "seconds": round(time.perf_counter() - started, 1), "exit code": code})
    failures = [line for line in output.splitlines() if line.startswith(("FAILED", "ERROR"))]
    section.notes += failures or ["no failures"]
    section.notes.append(f"full output: {log_path.name}")
    return section


def text_of(stream: str | bytes | None) -> str:
    """A timed-out subprocess's captured output: bytes on some Pythons even with text=True."""
    return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")


def pytest_counts(output: str) -> dict[str, int]:
    """``3 passed, 1 skipped, 5 deselected in 9.1s`` as counts; an outcome absent from the summary is 0."""
    found = {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|skipped|deselected|errors?|xfailed|xpassed)", output)}
    found["error"] = found.pop("errors", 0) + found.get("error", 0)
    return {name: found.get(name, 0) for name in ("passed", "failed", "error", "skipped", "deselected")}


# ---------------------------------------------------------------- b. training images/s


def search_models(preset: dict[str, Any]) -> dict[str, ModelConfig]:
    """The default first: when the budget runs short, the compiled rows that go are the extremes'."""
    return {"default": model_config_from_dict(preset["train"]["model"]), "smallest": SMALLEST, "largest": LARGEST}


def describe(model_config: ModelConfig) -> str:
    changed = [f"{f.name}={getattr(model_config, f.name)}" for f in fields(ModelConfig) if getattr(model_config, f.name) != f.default]
    return ", ".join(changed) or "defaults"


@dataclass
class Trainer:
    """A model, optimizer and scaler set up as ``fit`` sets them up on CUDA, stepping on batches of a face pool."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    config: TrainConfig
    generator: torch.Generator

    def step(self, pool: torch.Tensor, batch: int) -> None:
        """One optimizer step, as fit's inner loop: gather, scale, corrupt on the device, fp16 autocast, scaled backward."""
        index = torch.randint(len(pool), (batch,), generator=self.generator, device=pool.device)
        clean = pool[index].float().div_(255.0)
        noisy = corrupt(clean, self.config.noise, self.generator)
        with torch.autocast("cuda", dtype=torch.float16):
            output = self.model(noisy)
        loss = LOSSES[self.config.loss](output.float(), clean)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()


def make_trainer(model_config: ModelConfig, config: TrainConfig, variant: str) -> Trainer:
    torch.manual_seed(0)
    core = ConvAutoencoder(model_config).cuda()
    if variant == "channels-last":
        core = core.to(memory_format=torch.channels_last)
    model = torch.compile(core, dynamic=True) if variant == "compile" else core
    optimizer = torch.optim.AdamW(core.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return Trainer(model, optimizer, torch.amp.GradScaler("cuda"), config, make_generator(0, "cuda"))


def time_steps(trainer: Trainer, pool: torch.Tensor, batch: int) -> dict[str, float]:
    """The first step alone (it holds any compile), WARMUP_STEPS more, then TIMED_STEPS between synchronisations."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    trainer.step(pool, batch)
    torch.cuda.synchronize()
    first = time.perf_counter() - started
    for _ in range(WARMUP_STEPS):
        trainer.step(pool, batch)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(TIMED_STEPS):
        trainer.step(pool, batch)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"img/s": round(TIMED_STEPS * batch / seconds), "ms/step": round(1000 * seconds / TIMED_STEPS, 2),
            "first step s": round(first, 2), "peak MiB": round(torch.cuda.max_memory_allocated() / 2**20)}


def bench_throughput(deadline: float, preset: dict[str, Any]) -> Section:
    section = Section("b", "training images/s on the GPU: the full search's smallest, default and largest models")
    config = config_from_dict(preset["train"])
    models = search_models(preset)
    pool = torch.from_numpy(smooth_faces(POOL_FACES, seed=1)).unsqueeze(1).cuda()
    compiles: list[float] = []  # seconds of each compile seen, to judge whether the next one fits
    compile_failed = False  # one failure of the compiler is the answer for every model: no time spent on more
    for variant in VARIANTS:
        for name, model_config in models.items():
            base = {"model": name, "params": count_parameters(ConvAutoencoder(model_config)), "variant": variant}
            first_needs = 1.3 * max(compiles, default=COMPILE_GUESS_S / 1.3) + 10 if variant == "compile" else 8
            if deadline - time.perf_counter() < first_needs or (variant == "compile" and compile_failed):
                why = "skipped: compile failed above" if variant == "compile" and compile_failed else "skipped: budget"
                section.rows += [{**base, "batch": batch, "status": why} for batch in BATCH_SIZES]
                continue
            progress(f"b: {name} model, {variant}")
            trainer = make_trainer(model_config, config, variant)
            failed = False
            for batch in BATCH_SIZES:
                if failed or deadline - time.perf_counter() < (first_needs if batch == BATCH_SIZES[0] else 5):
                    section.rows.append({**base, "batch": batch, "status": "skipped: failed above" if failed else "skipped: budget"})
                    continue
                try:
                    section.rows.append({**base, "batch": batch, **time_steps(trainer, pool, batch), "status": "ok"})
                except Exception as error:  # an OOM or a compiler failure is a result here, not the end of the run
                    section.rows.append({**base, "batch": batch, "status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120]}"})
                    failed = True
                    compile_failed = compile_failed or variant == "compile"
                    continue
                if variant == "compile" and batch == BATCH_SIZES[0]:
                    compiles.append(section.rows[-1]["first step s"])
            del trainer
            torch._dynamo.reset()
            torch.cuda.empty_cache()
    section.notes += [
        "models (ModelConfig fields apart from their defaults; default is full.yaml's train.model): "
        + "; ".join(f"{name}: {describe(model_config)}" for name, model_config in models.items()),
        f"as fit trains on CUDA: AdamW (lr {config.lr:g}, weight decay {config.weight_decay:g}), loss {config.loss}, noise {config.noise} "
        f"drawn on the GPU, fp16 autocast with a GradScaler; batches gathered from {POOL_FACES} synthetic uint8 faces on the GPU",
        f"per row: 1 first step (timed alone: it holds the compile), {WARMUP_STEPS} warm-up steps, then {TIMED_STEPS} steps between "
        "torch.cuda.synchronize calls; img/s counts input faces (mirror models run each face twice)",
        "eager: fit's CUDA path (contiguous weights); channels-last: the same on channels-last weights; compile: torch.compile(model, "
        "dynamic=True), made once per model and stepped at every batch size: the first batch's 'first step s' is the compile, a later "
        "one's any recompile",
        f"peak MiB: torch.cuda.max_memory_allocated during the row, the {pool.numel() / 2**20:.0f} MiB face pool, weights and optimizer "
        "state included; cudnn.benchmark off, as in fit",
    ]
    return section


# ---------------------------------------------------------------- c. trials sharing the GPU


def share_worker(rank: int, data_dir: str, config_values: dict[str, Any], inbox: Any, outbox: Any) -> None:
    """One trial process: warm CUDA up with a tiny fit, then for each start time it is sent, fit from that moment and report."""
    try:
        splits = synthetic_splits(np.load(Path(data_dir) / "train.npy"), np.load(Path(data_dir) / "val.npy"))
        config = config_from_dict(config_values)
        fit(replace(config, epochs=1, train_size=1024, val_size=256), splits)
        outbox.put({"rank": rank, "ready": True})
        for start_at in iter(inbox.get, None):
            time.sleep(max(0.0, start_at - time.time()))
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            started = time.time()
            result = fit(config, splits)
            peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else math.nan
            outbox.put({"rank": rank, "start": started, "end": time.time(), "history": result.history, "peak_mib": peak})
    except Exception as error:
        outbox.put({"rank": rank, "error": f"{type(error).__name__}: {error}"})


def collect(outbox: Any, count: int, until: float, processes: list[Any]) -> list[dict[str, Any]]:
    """Up to ``count`` messages before ``until``; stops early when a message is an error or a process has died."""
    messages: list[dict[str, Any]] = []
    while len(messages) < count and time.perf_counter() < until:
        try:
            messages.append(outbox.get(timeout=1.0))
        except queue.Empty:
            if not all(process.is_alive() for process in processes):
                break
        if messages and "error" in messages[-1]:
            break
    return messages


def share_row(count: int, reports: list[dict[str, Any]], per_epoch: int, epochs: int, single: float | None) -> dict[str, Any]:
    span = max(r["end"] for r in reports) - min(r["start"] for r in reports)
    rates = [float(np.mean([h["images_per_second"] for h in r["history"]])) for r in reports]
    total = count * epochs * per_epoch / span
    return {
        "processes": count, "train img/s per process": round(float(np.mean(rates))), "sum of train img/s": round(sum(rates)),
        "total img/s (wall)": round(total), "x one process": round(total / (single or total), 2), "fit s (span)": round(span, 1),
        "peak MiB per process": round(max(r["peak_mib"] for r in reports), 0), "status": "ok",
    }


def bench_sharing(deadline: float, preset: dict[str, Any], epochs: int) -> Section:
    """The processes start (and warm up) once; each round sends N of them one start time, so all fits begin together."""
    section = Section("c", "trials sharing one GPU: N processes, each fit() of the full search's default model")
    config = config_from_dict({**preset["train"], "epochs": epochs, "device": "cuda", "amp": True, "num_threads": 2})
    per_epoch = SHARE_TRAIN // config.batch_size * config.batch_size
    context = multiprocessing.get_context("spawn")
    outbox, inboxes = context.Queue(), [context.Queue() for _ in range(max(SHARE_COUNTS))]
    with tempfile.TemporaryDirectory(prefix="gpu-share-") as data_dir:
        faces = smooth_faces(SHARE_TRAIN + SHARE_VAL, seed=2)
        np.save(Path(data_dir) / "train.npy", faces[:SHARE_TRAIN])
        np.save(Path(data_dir) / "val.npy", faces[SHARE_TRAIN:])
        progress(f"c: starting {len(inboxes)} trial processes")
        started = time.perf_counter()
        processes = [context.Process(target=share_worker, args=(rank, data_dir, config_to_dict(config), inbox, outbox), daemon=True)
                     for rank, inbox in enumerate(inboxes)]
        for process in processes:
            process.start()
        try:
            ready = collect(outbox, len(processes), deadline, processes)
            section.notes.append(f"{len(processes)} processes started and warmed up in {time.perf_counter() - started:.1f} s (not in the rows)")
            broken = next((m["error"] for m in ready if "error" in m), None) or (None if len(ready) == len(processes) else "not ready in time")
            single: float | None = None
            estimate = 10.0
            for count in SHARE_COUNTS:
                left = deadline - time.perf_counter()
                if broken or left < estimate:
                    why = f"failed: {broken[:160]}" if broken else f"skipped: budget ({left:.0f} s left, about {estimate:.0f} s needed)"
                    section.rows.append({"processes": count, "status": why})
                    continue
                progress(f"c: {count} trial process{'es' if count > 1 else ''} at once")
                start_at = time.time() + 0.5
                for inbox in inboxes[:count]:
                    inbox.put(start_at)
                reports = collect(outbox, count, deadline, processes[:count])
                if len(reports) < count or any("error" in r for r in reports):
                    broken = next((r["error"] for r in reports if "error" in r), "timeout or a process died")
                    section.rows.append({"processes": count, "status": f"failed: {broken[:160]}"})
                    continue
                section.rows.append(share_row(count, reports, per_epoch, epochs, single))
                single = single or section.rows[-1]["total img/s (wall)"]
                estimate = 2.5 * section.rows[-1]["fit s (span)"] + 2
        finally:
            for inbox in inboxes:
                inbox.put(None)
            for process in processes:
                process.join(timeout=10)
                if process.is_alive():
                    process.terminate()
                    process.join(timeout=5)
    section.notes += [
        f"each process: {SHARE_TRAIN:,} synthetic faces to train on and {SHARE_VAL:,} to validate on, TrainConfig from full.yaml's train "
        f"section (model {describe(config.model)}, loss {config.loss}, batch {config.batch_size}, noise {config.noise}, "
        f"val_noise {config.val_noise}) with {epochs} epochs, device {config.device}, fp16 AMP; each warmed up once with a 1-epoch fit "
        "on 1,024 faces, then the round's N processes start their fits at one moment",
        "train img/s per process: fit's own epoch rate (training steps only); total img/s (wall): all N processes' training faces over "
        "the span from the first start to the last end of their fits, validation included",
        "plain processes on one GPU without MPS, as Ray places trials that ask for 1/N of a GPU; idle processes hold only their memory",
    ]
    return section


# ---------------------------------------------------------------- d. the shipped recipe


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


# ---------------------------------------------------------------- main


def load_recipe_splits(args: argparse.Namespace) -> Splits | None:
    """Read before the first section, so a wrong path fails at once rather than minutes in."""
    if args.faces_npz:
        if not Path(args.faces_npz).is_file():
            raise SystemExit(f"bench/gpu.py: --faces-npz {args.faces_npz} does not exist; write it with --pack-data and carry it along")
        return split_faces(read_faces_npz(Path(args.faces_npz)))
    if args.data:
        try:
            return load_splits(args.data)
        except (DataError, DataNotFound) as error:
            raise SystemExit(f"bench/gpu.py: {error}") from None
    return None


def run_section(key: str, deadline: float, args: argparse.Namespace, preset: dict[str, Any], splits: Splits | None) -> Section:
    if key == "a":
        return run_cuda_tests(min(150.0, deadline - time.perf_counter()), args.out.with_name(f"{args.out.stem}-pytest.log"))
    if key == "b":
        return bench_throughput(deadline, preset)
    if key == "c":
        return bench_sharing(deadline, preset, args.share_epochs)
    if splits is None:
        return Section("d", "shipped recipe at GPU scale", [{"status": "skipped: no data (pass --faces-npz or --data)"}])
    if deadline - time.perf_counter() < SCORE_RESERVE_S + 15:
        return Section("d", "shipped recipe at GPU scale", [{"status": f"skipped: budget ({deadline - time.perf_counter():.0f} s left)"}])
    return bench_recipe(deadline, splits, args.recipe_epochs, args.out.parent)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench/gpu.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("gpu-bench.md"), help="the Markdown report; the CSV, pytest log and model go beside it")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget in seconds; later sections shrink to fit")
    parser.add_argument("--sections", default=SECTIONS, help="which of a, b, c, d to run (default abcd)")
    parser.add_argument("--faces-npz", help="FER2013 faces packed by --pack-data (arrays images and usage), for section d")
    parser.add_argument("--data", help="any FER2013 file denoise_core reads (.csv, .csv.gz, .tar.gz, folder), instead of --faces-npz")
    parser.add_argument("--recipe-epochs", type=int, default=10, help="epochs of the shipped recipe in section d")
    parser.add_argument("--share-epochs", type=int, default=2, help="epochs of each trial process in section c")
    parser.add_argument("--pack-data", nargs=2, type=Path, metavar=("SRC", "DST"),
                        help="no GPU needed: write the compact faces file DST from SRC (FER2013 file or parse-cache .npz), then exit")
    parser.add_argument("--train-faces", type=int, default=PACK_TRAIN_FACES, help="Training faces --pack-data keeps (every test face is kept)")
    args = parser.parse_args(argv)
    if args.pack_data:
        pack_data(*args.pack_data, train_faces=args.train_faces)
        return
    if not torch.cuda.is_available():
        raise SystemExit(f"bench/gpu.py: CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
                         "run it on a machine with an NVIDIA GPU (only --pack-data works without one)")
    sections = "".join(key for key in SECTIONS if key in args.sections)
    budget = Budget(time.perf_counter(), args.budget_s)
    splits = load_recipe_splits(args) if "d" in sections else None
    preset = load_yaml_file(FULL_PRESET)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    header = machine_lines(args)
    done: list[Section] = []
    for key in sections:
        started = time.perf_counter()
        deadline = budget.deadline(sections[sections.index(key) + 1:])
        try:
            section = run_section(key, deadline, args, preset, splits)
        except Exception as error:  # one broken section must not cost the others their run on the GPU
            torch.cuda.empty_cache()
            section = Section(key, "failed before its table was complete", [{"status": f"failed: {type(error).__name__}: {str(error)[:200]}"}],
                              traceback.format_exc().strip().splitlines()[-12:])
        section.notes.append(f"section time: {time.perf_counter() - started:.0f} s, ending {budget.elapsed():.0f} s into the run "
                             f"(its deadline: {deadline - budget.start:.0f} s)")
        done.append(section)
        print("\n".join(render(section)), flush=True)
        write_report(out, header + [f"elapsed {budget.elapsed():.0f} s of {args.budget_s:.0f} s"], done)
    progress(f"done in {budget.elapsed():.0f} s: {out}, {out.with_suffix('.csv')}")


if __name__ == "__main__":
    main()
