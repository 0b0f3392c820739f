"""Data-parallel training: two real processes on the CPU with the gloo backend."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from denoise_core.data import Splits
from denoise_core.model import ModelConfig
from denoise_core.fit import Diverged, TrainConfig, fit
from synthetic import smooth_splits

WORLD_SIZE = 2
CONFIG = TrainConfig(model=ModelConfig(base_width=4, bottleneck_size=4), noise="sp:0.05-0.5", epochs=6, batch_size=8,
                     lr=3e-3, patience=2, min_delta=1.0, seed=0, num_threads=1)


def twin_shards() -> Splits:
    """Every training face twice in a row, so that both ranks' shards hold the same faces: only their noise and
    order can make their losses differ."""
    splits = smooth_splits(train=16, val=8, test=2)
    return replace(splits, train=np.repeat(splits.train, WORLD_SIZE, axis=0))


def exit_rank() -> None:
    """End a rank's process at once, once its results are saved and it has left the process group: gloo's threads can
    abort the interpreter's own exit ("terminate called without an active exception", SIGABRT) after the work is done,
    which the spawning test would read as a failed rank."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def train_rank(rank: int, store: str, out: str, rank_zero_stops_at: int | None) -> None:
    """One rank's run, saving per epoch its train loss and weights; a rank left waiting in a collective fails after 30 s."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=30))
    try:
        epochs = []

        def on_epoch(report) -> bool:
            epochs.append({"train_loss": report.train_loss, "state": report.checkpoint["model_state"]})
            return rank == 0 and report.epoch == rank_zero_stops_at

        result = fit(CONFIG, twin_shards(), on_epoch=on_epoch, device=torch.device("cpu"),
                     wrap_model=torch.nn.parallel.DistributedDataParallel, rank=rank, world_size=WORLD_SIZE)
        torch.save({"epochs": epochs, "stopped_at": result.history[-1]["epoch"], "stopped_early": result.stopped_early}, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    exit_rank()


def run_ranks(directory: Path, rank_zero_stops_at: int | None = None) -> list[dict]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NUMBA_NUM_THREADS", "1")  # one thread per rank: numba's idle pool would take the cores from torch's
        mp.spawn(train_rank, args=(str(directory / "store"), str(directory), rank_zero_stops_at), nprocs=WORLD_SIZE, join=True)
    return [torch.load(directory / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    return run_ranks(tmp_path_factory.mktemp("ddp"))


@pytest.mark.timeout(120)
def test_ranks_draw_their_own_noise_and_order(ranks):
    first, second = ([e["train_loss"] for e in r["epochs"]] for r in ranks)
    assert all(a != b for a, b in zip(first, second))


@pytest.mark.timeout(120)
def test_ranks_hold_identical_weights_and_batchnorm_statistics_after_every_epoch(ranks):
    assert len(ranks[0]["epochs"]) == len(ranks[1]["epochs"]) >= 2
    for first, second in zip(ranks[0]["epochs"], ranks[1]["epochs"]):
        assert first["state"].keys() == second["state"].keys()
        assert any("running_mean" in key for key in first["state"])
        for key, tensor in first["state"].items():
            assert torch.equal(tensor, second["state"][key]), key


@pytest.mark.timeout(120)
def test_ranks_stop_early_at_the_same_epoch(ranks):
    assert [r["stopped_early"] for r in ranks] == [True, True]
    assert ranks[0]["stopped_at"] == ranks[1]["stopped_at"] == 1 + CONFIG.patience < CONFIG.epochs


@pytest.mark.timeout(120)
def test_all_ranks_stop_when_rank_zero_asks_to(tmp_path):
    ranks = run_ranks(tmp_path, rank_zero_stops_at=1)
    assert [r["stopped_at"] for r in ranks] == [1, 1]
    assert [r["stopped_early"] for r in ranks] == [False, False]


def spoil_validation_on_rank_one(core: torch.nn.Module) -> torch.nn.Module:
    """Rank 1's model answers NaN when evaluated (training is untouched): a divergence that only one rank sees."""
    if dist.get_rank() == 1:
        core.register_forward_hook(lambda module, inputs, output: output if module.training else torch.full_like(output, float("nan")))
    return torch.nn.parallel.DistributedDataParallel(core)


def diverge_rank(rank: int, store: str, out: str) -> None:
    """One rank's run where only rank 1 diverges; saves how the run ended, so a rank left waiting shows as a timeout."""
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD_SIZE, timeout=timedelta(seconds=20))
    try:
        fit(CONFIG, twin_shards(), device=torch.device("cpu"), wrap_model=spoil_validation_on_rank_one, rank=rank, world_size=WORLD_SIZE)
        ended = "finished"
    except Exception as error:  # noqa: BLE001 - what ended the run is the result
        ended = f"{type(error).__name__}: {error}"
    finally:
        dist.destroy_process_group()
    Path(out, f"rank{rank}.txt").write_text(ended)
    exit_rank()


@pytest.mark.timeout(120)
def test_a_divergence_on_one_rank_ends_every_rank_with_diverged(tmp_path):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("NUMBA_NUM_THREADS", "1")
        mp.spawn(diverge_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=WORLD_SIZE, join=True)
    ended = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(WORLD_SIZE)]
    assert all(text.startswith(f"{Diverged.__name__}: training diverged at epoch 1") for text in ended), ended
    assert "on another rank" in ended[0] and "val nan" in ended[1]
