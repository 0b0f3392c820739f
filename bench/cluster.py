"""Study throughput on one Ray node vs two, on this machine, and what the `full` preset would take on GPUs.

    python bench/cluster.py [--data PATH] [--trials 4] [--rounds 2] [--epochs 3] [--gpu-tflops 15] [--trainer-overhead 25]

1. The same small study (the smoke preset's model and search on a slice of the real FER2013, every trial
   running all its epochs: no ASHA, so every trial costs the same) runs through `RAY_ADDRESS`, as on a
   cluster, on one `ray start` node with 2 CPUs and on two nodes of 1 CPU each (a head and a node joined to
   it, the second on 127.0.0.2), 2 trials at a time both ways; both clusters stay up and the studies
   alternate (A B B A), so that others' load on the machine hits both alike. Printed: trials per hour (end to
   end, and over the trial phase alone), the per-trial cost split into training and Ray/Tune overhead, the
   ratio, and the load average (this machine is shared: a load above its cores makes the numbers noisy).
2. The per-trial cost of the `full` preset, from measured numbers where this machine can measure them (FLOPs
   per image of every model width in the search space, this CPU's training and validation speed, the per-trial
   overhead) and stated assumptions where it cannot (the GPU's effective speed, the TorchTrainer start-up),
   turned into a wall-time and cost estimate for 1, 4 and 16 GPUs at 4 trials per GPU.

The data path is --data, else $FER2013_PATH, else ../shared/fer2013/fer2013.csv.gz next to the repository.
Takes 5-10 minutes on a 2-core machine (more when others share it). Starts and stops its own Ray nodes
(never `ray stop`, which would stop every Ray on the machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import pandas as pd  # noqa: E402

from denoise_core.data import read_csv_head, resolve_data_path  # noqa: E402

SHARED_FER2013 = REPO_ROOT.parent / "shared" / "fer2013" / "fer2013.csv.gz"
PYTHON = str(Path(sys.executable).absolute())
RAY_CLI = str(Path(sys.executable).absolute().with_name("ray"))
QUIET_RAY = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
             "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}
FULL_TRAIN_FACES, FULL_VAL_FACES = 28_698, 3_589  # FER2013 Training (blank faces dropped) and PublicTest
FULL_TRIALS, FULL_MAX_EPOCHS, FULL_GRACE, FULL_REDUCTION = 64, 60, 5, 3  # presets/full.yaml
TRIALS_PER_GPU = 4  # gpus_per_trial 0.25
G5_XLARGE_PER_HOUR, M5_XLARGE_PER_HOUR = 1.006, 0.192  # USD, us-east-1 on-demand list prices (1x A10G worker; CPU head)
CPU_TIMING_TRAIN, CPU_TIMING_VAL = 384, 256  # faces in the one timed CPU epoch


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- local Ray nodes


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state), from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


class LocalNodes:
    """`ray start --block` nodes on this machine, each in its own process group and temp dir; stop() ends
    exactly them and everything they started."""

    def __init__(self, nodes: int, cpus: int, env: dict[str, str]):
        self.count, self.cpus = nodes, cpus
        self.temp_dir = Path(tempfile.mkdtemp(prefix="fsbench-", dir="/tmp"))  # Ray socket paths must stay short
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | QUIET_RAY | env
        self.popens: list[subprocess.Popen] = []

    def __enter__(self) -> "LocalNodes":
        try:
            self._launch([RAY_CLI, "start", "--head", "--port", str(self.port), "--num-cpus", str(self.cpus), "--num-gpus", "0",
                          "--temp-dir", str(self.temp_dir / "head"), "--include-dashboard", "false",
                          "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
                          "--disable-usage-stats", "--block"], "head")
            self._wait(1)
            for index in range(1, self.count):
                self._launch([RAY_CLI, "start", "--address", self.address, "--num-cpus", str(self.cpus), "--num-gpus", "0",
                              "--node-ip-address", f"127.0.0.{index + 1}", "--temp-dir", str(self.temp_dir / f"node{index}"),
                              "--dashboard-agent-listen-port", str(free_port()), "--disable-usage-stats", "--block"], f"node{index}")
            self._wait(self.count)
            return self
        except BaseException:
            self.__exit__()
            raise

    def _launch(self, command: list[str], name: str) -> None:
        with open(self.temp_dir / f"{name}.log", "wb") as log:
            self.popens.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True))

    def _wait(self, count: int, timeout: float = 180) -> None:
        script = (f"import ray; ray.init(address={self.address!r}, log_to_driver=False, logging_level='ERROR');"
                  "print(sum(1 for n in ray.nodes() if n['Alive']))")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.popens):
                raise RuntimeError(f"a Ray node exited early; see {self.temp_dir}/*.log")
            result = subprocess.run([PYTHON, "-c", script], env=self.env, capture_output=True, text=True, timeout=60)
            if result.returncode == 0 and int(result.stdout.split()[-1]) >= count:
                return
            time.sleep(1)
        raise TimeoutError(f"{count} Ray node(s) not alive after {timeout:.0f} s")

    def processes(self) -> set[int]:
        table = process_table()
        groups = {p.pid for p in self.popens}
        found = groups | {pid for pid, (_, pgid, _) in table.items() if pgid in groups}
        children: dict[int, list[int]] = {}
        for pid, (ppid, _, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        stack = list(found)
        while stack:
            for child in children.get(stack.pop(), []):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return {pid for pid in found if pid in table and table[pid][2] != "Z"}

    def __exit__(self, *exc) -> None:
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            targets = self.processes()
            for pid in targets:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and targets & self.processes():
                time.sleep(0.3)
        for popen in self.popens:
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.temp_dir, ignore_errors=True)


# ---------------------------------------------------------------- the study on 1 vs 2 nodes


@dataclass(frozen=True)
class StudyRun:
    layout: str
    trials: int
    end_to_end_s: float
    trial_phase_s: float
    trial_s: float  # mean wall time of one trial (Tune's time_total_s)
    training_s: float  # mean time inside the core's epochs
    node_ips: dict[str, int]
    load: tuple[float, float]  # 1-minute load average when the study started and ended (others' work included)

    @property
    def overhead_s(self) -> float:
        return self.trial_s - self.training_s

    def per_hour(self, seconds: float) -> float:
        return self.trials / seconds * 3600


def run_study(layout: str, cluster: LocalNodes, name: str, data: Path, workdir: Path, trials: int, epochs: int) -> StudyRun:
    command = [PYTHON, str(REPO_ROOT / "study" / "run.py"), "--preset", "smoke", "--data", str(data), "--storage", str(workdir / "studies"),
               "--name", name, "--num-samples", str(trials), "--max-concurrent", "2", "--epochs", str(epochs),
               "--set", "scheduler=none", "--set", "holdout_faces=32"]
    progress(f"{layout}: {trials} trials x {epochs} epochs, 2 at a time")
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    result = subprocess.run(command, env=cluster.env | {"RAY_ADDRESS": cluster.address}, capture_output=True, text=True, timeout=900)
    end_to_end = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    if result.returncode:
        raise RuntimeError(f"{layout}: study failed ({result.returncode}): {result.stderr[-2000:]}")
    study_dir = workdir / "studies" / name
    table = pd.read_csv(study_dir / "trials.csv")
    starts, ends, training = [], [], []
    for trial_id in table["trial_id"]:
        results = [json.loads(line) for line in (study_dir / f"trial_{trial_id}" / "result.json").read_text().splitlines()]
        starts.append(results[0]["timestamp"] - results[0]["time_this_iter_s"])
        ends.append(results[-1]["timestamp"])
        training.append(sum(r["seconds"] for r in results))
    return StudyRun(layout=layout, trials=len(table), end_to_end_s=end_to_end, trial_phase_s=max(ends) - min(starts),
                    trial_s=float(table["time_s"].mean()), training_s=sum(training) / len(training),
                    node_ips=table["node_ip"].value_counts().to_dict(), load=(load_before, load_after))


def pooled(runs: list[StudyRun]) -> StudyRun:
    """Several studies of one layout as one: times and trials added up, per-trial means weighted by trials."""
    trials = sum(r.trials for r in runs)
    ips: dict[str, int] = {}
    for run in runs:
        for ip, count in run.node_ips.items():
            ips[ip] = ips.get(ip, 0) + count
    return StudyRun(layout=runs[0].layout, trials=trials, end_to_end_s=sum(r.end_to_end_s for r in runs),
                    trial_phase_s=sum(r.trial_phase_s for r in runs), trial_s=sum(r.trial_s * r.trials for r in runs) / trials,
                    training_s=sum(r.training_s * r.trials for r in runs) / trials, node_ips=ips,
                    load=(max(r.load[0] for r in runs), max(r.load[1] for r in runs)))


# ---------------------------------------------------------------- the full preset's per-trial cost


@dataclass(frozen=True)
class FullCost:
    flops_per_image: dict[int, float]  # base_width -> fwd+bwd FLOPs per 48x48 image (batch 128)
    cpu_train_ips: float  # base_width 32, 1 thread
    cpu_val_s_per_image: float
    cpu_flops_per_s: float

    @property
    def mean_flops(self) -> float:  # the search draws base_width uniformly from the full preset's choices
        return sum(self.flops_per_image.values()) / len(self.flops_per_image)


def measure_full_cost(data: Path) -> FullCost:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from denoise_core.data import load_splits
    from denoise_core.model import ConvAutoencoder
    from denoise_core.settings import override
    from denoise_core.fit import fit
    from study.config import build_config

    full = build_config("full")
    widths = full.search["model.base_width"]["choice"]
    flops = {}
    for width in widths:
        model_config = override(full.train, {"model.base_width": width}).model
        model = ConvAutoencoder(model_config)
        batch = torch.rand(128, 1, 48, 48)
        with FlopCounterMode(display=False) as counter:
            model(batch).float().mean().backward()
        flops[width] = counter.get_total_flops() / 128
    progress("timing one CPU epoch of the full preset's default model (base_width 32), 1 thread")
    config = override(full.train, {"epochs": 1, "train_size": CPU_TIMING_TRAIN, "val_size": CPU_TIMING_VAL, "device": "cpu", "num_threads": 1})
    reports = []
    fit(config, load_splits(data), on_epoch=reports.append)
    report = reports[0]
    train_s = CPU_TIMING_TRAIN // config.batch_size * config.batch_size / report.images_per_second
    val_s = max(report.seconds - train_s, 1e-6) / CPU_TIMING_VAL
    return FullCost(flops_per_image=flops, cpu_train_ips=report.images_per_second, cpu_val_s_per_image=val_s,
                    cpu_flops_per_s=flops[32] * report.images_per_second)


def asha_epochs(trials: int) -> list[int]:
    """Epochs each trial runs under ASHA (grace 5, reduction 3, max 60): a third of the trials goes on at each rung."""
    rungs = [FULL_GRACE]
    while rungs[-1] * FULL_REDUCTION < FULL_MAX_EPOCHS:
        rungs.append(rungs[-1] * FULL_REDUCTION)
    epochs, left = [], trials
    for index, rung in enumerate(rungs):
        going_on = round(trials / FULL_REDUCTION ** (index + 1))
        epochs += [rung] * (left - going_on)
        left = going_on
    return epochs + [FULL_MAX_EPOCHS] * left


def full_estimate(cost: FullCost, gpus: int, gpu_tflops: float, overhead_s: float, epochs: list[int]) -> tuple[float, float]:
    """Wall seconds and USD for the full preset on `gpus` GPUs, 4 trials per GPU sharing it."""
    gpu_flops = gpu_tflops * 1e12
    epoch_flops = FULL_TRAIN_FACES * cost.mean_flops + FULL_VAL_FACES * cost.mean_flops / 3  # validation: forward only
    slots = min(len(epochs), gpus * TRIALS_PER_GPU)
    work = sum(epochs) * epoch_flops / gpu_flops  # GPU-seconds of training
    longest = max(epochs) * epoch_flops / (gpu_flops / TRIALS_PER_GPU) + overhead_s  # a trial sharing its GPU with 3 others
    waves = math.ceil(len(epochs) / slots)
    wall = max(work / gpus + waves * overhead_s, longest)
    dollars = wall / 3600 * (gpus * G5_XLARGE_PER_HOUR + M5_XLARGE_PER_HOUR)
    return wall, dollars


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 (default: $FER2013_PATH, else ../shared/fer2013/fer2013.csv.gz)")
    parser.add_argument("--trials", type=int, default=4, help="trials per study (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="studies per layout, alternating A B B A ... (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3, the smoke preset's)")
    parser.add_argument("--gpu-tflops", type=float, default=15.0,
                        help="ASSUMED effective training throughput of one A10G on these small conv nets, TFLOP/s (default 15)")
    parser.add_argument("--trainer-overhead", type=float, default=25.0,
                        help="ASSUMED start-up + tear-down seconds of one TorchTrainer trial (default 25; RAY_NOTES measured 18-36 s)")
    args = parser.parse_args(argv)
    data = Path(args.data or os.environ.get("FER2013_PATH") or (SHARED_FER2013 if SHARED_FER2013.exists() else ""))
    data = resolve_data_path(str(data) if str(data) not in ("", ".") else None)

    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        slice_path = workdir / "fer2013-slice.csv"
        slice_path.write_bytes(read_csv_head(data, 600))
        began = time.perf_counter()
        layouts = [("1 node x 2 CPUs", 1, 2), ("2 nodes x 1 CPU", 2, 1)]
        by_layout: list[list[StudyRun]] = [[], []]
        with contextlib.ExitStack() as stack:
            # Both clusters stay up side by side (idle Ray costs ~1% CPU) and the studies alternate A B B A ...,
            # so a change in the machine's load hits both layouts alike.
            clusters = []
            for label, nodes, cpus in layouts:
                progress(f"{label}: starting {nodes} Ray node(s) x {cpus} CPU")
                clusters.append(stack.enter_context(LocalNodes(nodes, cpus, {"FACESTUDY_CACHE": str(workdir / "cache")})))
            for round_index in range(args.rounds):
                for index in ((0, 1) if round_index % 2 == 0 else (1, 0)):
                    by_layout[index].append(run_study(layouts[index][0], clusters[index], f"bench-{index}-{round_index}", slice_path,
                                                      workdir, args.trials, args.epochs))
        runs = [pooled(r) for r in by_layout]
        cost = measure_full_cost(slice_path)
        elapsed = time.perf_counter() - began
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    one, two = runs
    print(f"\nStudy throughput on this machine ({os.cpu_count()} cores): smoke model and search, {args.rounds} studies per layout"
          f" (alternating) of {args.trials} trials x {args.epochs} epochs, 2 at a time, no early stopping, through RAY_ADDRESS\n")
    header = ["layout", "trials/h (end to end)", "trials/h (trial phase)", "s per trial", "of which training", "Ray/Tune overhead",
              "trials per node IP", "load avg start/end"]
    rows = [[r.layout, f"{r.per_hour(r.end_to_end_s):.0f}", f"{r.per_hour(r.trial_phase_s):.0f}", f"{r.trial_s:.1f}",
             f"{r.training_s:.1f}", f"{r.overhead_s:.1f}", ", ".join(f"{k}: {v}" for k, v in r.node_ips.items()),
             f"{r.load[0]:.1f} / {r.load[1]:.1f}"] for r in runs]
    rows.append(["ratio 2 nodes / 1 node", f"{two.per_hour(two.end_to_end_s) / one.per_hour(one.end_to_end_s):.2f}",
                 f"{two.per_hour(two.trial_phase_s) / one.per_hour(one.trial_phase_s):.2f}", f"{two.trial_s / one.trial_s:.2f}",
                 f"{two.training_s / one.training_s:.2f}", f"{two.overhead_s / max(one.overhead_s, 1e-9):.2f}", "", ""])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for index, row in enumerate([header, *rows]):
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    print("\n(end to end: `study/run.py` start to exit, including connecting, the best-model export and hold-out scoring;"
          "\n trial phase: first trial start to last trial end, from the trials' result.json timestamps;"
          "\n training: the core's epochs inside a trial; both layouts give each trial 1 CPU and 1 torch thread.)")
    rounds = [b.per_hour(b.trial_phase_s) / a.per_hour(a.trial_phase_s) for a, b in zip(*by_layout)]
    print("ratio 2 nodes / 1 node (trial phase) study by study: " + ", ".join(f"{r:.2f}" for r in rounds))
    if max(max(r.load) for r in runs) > (os.cpu_count() or 1) + 0.5:
        print(f"WARNING: the load average exceeded the {os.cpu_count()} cores during the runs: other work shared the CPUs, and"
              " differences between the layouts within that noise are not the layouts'.")

    epochs_asha = asha_epochs(FULL_TRIALS)
    overhead = max(args.trainer_overhead, one.overhead_s)
    print(f"\nEstimated wall time of the `full` preset ({FULL_TRIALS} trials, up to {FULL_MAX_EPOCHS} epochs of {FULL_TRAIN_FACES:,} faces,"
          f" validation on {FULL_VAL_FACES:,}), {TRIALS_PER_GPU} trials per GPU:\n")
    print("measured here:")
    print("  FLOPs per image, forward + backward (torch FlopCounterMode), per base_width in the search: "
          + ", ".join(f"{w}: {f / 1e9:.2f} GFLOP" for w, f in cost.flops_per_image.items()) + f"; mean {cost.mean_flops / 1e9:.2f} GFLOP")
    print(f"  this CPU, 1 thread, base_width 32: {cost.cpu_train_ips:.0f} training images/s ({cost.cpu_flops_per_s / 1e9:.0f} GFLOP/s effective),"
          f" {cost.cpu_val_s_per_image * 1000:.1f} ms per validation image (with PSNR/SSIM)")
    print(f"  per-trial Ray/Tune overhead of an in-process trial: {one.overhead_s:.1f} s (above)")
    print("assumed:")
    print(f"  one A10G (g5.xlarge) trains at {args.gpu_tflops:g} TFLOP/s effective with AMP (--gpu-tflops; ~12% of its fp16 tensor peak,"
          " ~half its fp32 peak),\n  shared evenly by the 4 trials on it; data corruption runs on the GPU and is not counted")
    print(f"  {overhead:.0f} s start-up per trial (--trainer-overhead; the full preset runs each trial as a TorchTrainer)")
    print(f"  epochs per trial: no early stopping = {FULL_MAX_EPOCHS} each; ASHA (grace {FULL_GRACE}, reduction {FULL_REDUCTION}) ="
          f" a third of the trials goes on at each rung: {sum(epochs_asha)} epochs in all ({sum(epochs_asha) / FULL_TRIALS:.1f} per trial)")
    print("  excluded: booting GPU nodes and their setup (~5-10 min after `ray up`/scale-up), the final hold-out scoring on the head\n")
    header = ["GPUs (g5.xlarge)", "concurrent trials", "wall, ASHA", "cost, ASHA", "wall, all 60 epochs", "cost, all 60 epochs"]
    rows = []
    for gpus in (1, 4, 16):
        asha_wall, asha_cost = full_estimate(cost, gpus, args.gpu_tflops, overhead, epochs_asha)
        full_wall, full_cost = full_estimate(cost, gpus, args.gpu_tflops, overhead, [FULL_MAX_EPOCHS] * FULL_TRIALS)
        rows.append([str(gpus), str(min(FULL_TRIALS, gpus * TRIALS_PER_GPU)), hours(asha_wall), f"${asha_cost:.0f}", hours(full_wall), f"${full_cost:.0f}"])
    cpu_epoch_s = FULL_TRAIN_FACES / cost.cpu_train_ips * cost.mean_flops / cost.flops_per_image[32] + FULL_VAL_FACES * cost.cpu_val_s_per_image
    cpu_wall = sum(epochs_asha) * cpu_epoch_s / 2 + math.ceil(FULL_TRIALS / 2) * overhead
    rows.append(["this machine, 2 CPUs", "2", hours(cpu_wall), "-", hours(FULL_MAX_EPOCHS * FULL_TRIALS * cpu_epoch_s / 2), "-"])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for index, row in enumerate([header, *rows]):
        print("| " + " | ".join(str(cell).ljust(width) for cell, width in zip(row, widths)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    print(f"\n(cost: on-demand list prices, g5.xlarge ${G5_XLARGE_PER_HOUR}/h per GPU + m5.xlarge head ${M5_XLARGE_PER_HOUR}/h;"
          " spot workers cost ~60% less.)")
    print(f"\nbenchmark time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
