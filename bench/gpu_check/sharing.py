"""Section c: N trial processes training on one GPU at once, as Ray places trials that ask for 1/N of a GPU."""

from __future__ import annotations

import math
import multiprocessing
import queue
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.gpu_check.data import smooth_faces, synthetic_splits
from bench.gpu_check.models import describe
from bench.gpu_check.report import Section, progress
from denoise_core.fit import config_from_dict, config_to_dict, fit


SHARE_COUNTS = (1, 2, 4, 8)
SHARE_TRAIN, SHARE_VAL = 28_698, 3_589  # FER2013's Training and PublicTest sizes


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

