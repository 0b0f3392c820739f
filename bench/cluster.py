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
import os
import shutil
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

from bench.full_cost import (FULL_GRACE, FULL_MAX_EPOCHS, FULL_REDUCTION, FULL_TRAIN_FACES, FULL_TRIALS, FULL_VAL_FACES,  # noqa: E402
                             G5_XLARGE_PER_HOUR, M5_XLARGE_PER_HOUR, TRIALS_PER_GPU, FullCost, asha_epochs, full_estimate, hours,
                             measure_full_cost, this_machine_estimate)
from bench.ray_nodes import PYTHON, LocalRayNodes  # noqa: E402
from bench.tables import markdown_table  # noqa: E402
from denoise_core.data import read_csv_head, resolve_data_path  # noqa: E402

SHARED_FER2013 = REPO_ROOT.parent / "shared" / "fer2013" / "fer2013.csv.gz"
LAYOUTS = (("1 node x 2 CPUs", 1, 2), ("2 nodes x 1 CPU", 2, 1))  # label, nodes, CPUs per node


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


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


def run_study(layout: str, cluster: LocalRayNodes, name: str, data: Path, workdir: Path, trials: int, epochs: int) -> StudyRun:
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


# ---------------------------------------------------------------- the command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="FER2013 (default: $FER2013_PATH, else ../shared/fer2013/fer2013.csv.gz)")
    parser.add_argument("--trials", type=int, default=4, help="trials per study (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="studies per layout, alternating A B B A ... (default 2)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3, the smoke preset's)")
    parser.add_argument("--gpu-tflops", type=float, default=15.0,
                        help="ASSUMED effective training throughput of one A10G on these small conv nets, TFLOP/s (default 15)")
    parser.add_argument("--trainer-overhead", type=float, default=25.0,
                        help="ASSUMED start-up + tear-down seconds of one TorchTrainer trial (default 25; RAY_NOTES measured 18-36 s)")
    return parser.parse_args(argv)


def data_path(given: str | None) -> Path:
    data = Path(given or os.environ.get("FER2013_PATH") or (SHARED_FER2013 if SHARED_FER2013.exists() else ""))
    return resolve_data_path(str(data) if str(data) not in ("", ".") else None)


def study_layouts(data: Path, workdir: Path, args: argparse.Namespace) -> list[list[StudyRun]]:
    """``args.rounds`` studies on each layout. Both clusters stay up side by side (idle Ray costs ~1% CPU) and the
    studies alternate A B B A ..., so a change in the machine's load hits both layouts alike."""
    by_layout: list[list[StudyRun]] = [[] for _ in LAYOUTS]
    with contextlib.ExitStack() as stack:
        clusters = []
        for label, nodes, cpus in LAYOUTS:
            progress(f"{label}: starting {nodes} Ray node(s) x {cpus} CPU")
            clusters.append(stack.enter_context(LocalRayNodes(nodes, cpus, {"FACESTUDY_CACHE": str(workdir / "cache")})))
        for round_index in range(args.rounds):
            for index in ((0, 1) if round_index % 2 == 0 else (1, 0)):
                by_layout[index].append(run_study(LAYOUTS[index][0], clusters[index], f"bench-{index}-{round_index}", data, workdir,
                                                  args.trials, args.epochs))
    return by_layout


def print_throughput(by_layout: list[list[StudyRun]], args: argparse.Namespace) -> None:
    one, two = runs = [pooled(r) for r in by_layout]
    print(f"\nStudy throughput on this machine ({os.cpu_count()} cores): smoke model and search, {args.rounds} studies per layout"
          f" (alternating) of {args.trials} trials x {args.epochs} epochs, 2 at a time, no early stopping, through RAY_ADDRESS\n")
    rows = [{"layout": r.layout, "trials/h (end to end)": f"{r.per_hour(r.end_to_end_s):.0f}", "trials/h (trial phase)": f"{r.per_hour(r.trial_phase_s):.0f}",
             "s per trial": f"{r.trial_s:.1f}", "of which training": f"{r.training_s:.1f}", "Ray/Tune overhead": f"{r.overhead_s:.1f}",
             "trials per node IP": ", ".join(f"{k}: {v}" for k, v in r.node_ips.items()), "load avg start/end": f"{r.load[0]:.1f} / {r.load[1]:.1f}"}
            for r in runs]
    ratios = [two.per_hour(two.end_to_end_s) / one.per_hour(one.end_to_end_s), two.per_hour(two.trial_phase_s) / one.per_hour(one.trial_phase_s),
              two.trial_s / one.trial_s, two.training_s / one.training_s, two.overhead_s / max(one.overhead_s, 1e-9)]
    rows.append(dict(zip(rows[0], ["ratio 2 nodes / 1 node", *(f"{r:.2f}" for r in ratios), "", ""])))
    print("\n".join(markdown_table(rows)))
    print("\n(end to end: `study/run.py` start to exit, including connecting, the best-model export and hold-out scoring;"
          "\n trial phase: first trial start to last trial end, from the trials' result.json timestamps;"
          "\n training: the core's epochs inside a trial; both layouts give each trial 1 CPU and 1 torch thread.)")
    rounds = [b.per_hour(b.trial_phase_s) / a.per_hour(a.trial_phase_s) for a, b in zip(*by_layout)]
    print("ratio 2 nodes / 1 node (trial phase) study by study: " + ", ".join(f"{r:.2f}" for r in rounds))
    if max(max(r.load) for r in runs) > (os.cpu_count() or 1) + 0.5:
        print(f"WARNING: the load average exceeded the {os.cpu_count()} cores during the runs: other work shared the CPUs, and"
              " differences between the layouts within that noise are not the layouts'.")


def print_full_estimate(cost: FullCost, measured_overhead_s: float, args: argparse.Namespace) -> None:
    epochs_asha = asha_epochs(FULL_TRIALS)
    overhead = max(args.trainer_overhead, measured_overhead_s)
    print(f"\nEstimated wall time of the `full` preset ({FULL_TRIALS} trials, up to {FULL_MAX_EPOCHS} epochs of {FULL_TRAIN_FACES:,} faces,"
          f" validation on {FULL_VAL_FACES:,}), {TRIALS_PER_GPU} trials per GPU:\n")
    print("measured here:")
    print("  FLOPs per image, forward + backward (torch FlopCounterMode), per base_width in the search: "
          + ", ".join(f"{w}: {f / 1e9:.2f} GFLOP" for w, f in cost.flops_per_image.items()) + f"; mean {cost.mean_flops / 1e9:.2f} GFLOP")
    print(f"  this CPU, 1 thread, base_width 32: {cost.cpu_train_ips:.0f} training images/s ({cost.cpu_flops_per_s / 1e9:.0f} GFLOP/s effective),"
          f" {cost.cpu_val_s_per_image * 1000:.1f} ms per validation image (with PSNR/SSIM)")
    print(f"  per-trial Ray/Tune overhead of an in-process trial: {measured_overhead_s:.1f} s (above)")
    print("assumed:")
    print(f"  one A10G (g5.xlarge) trains at {args.gpu_tflops:g} TFLOP/s effective with AMP (--gpu-tflops; ~12% of its fp16 tensor peak,"
          " ~half its fp32 peak),\n  shared evenly by the 4 trials on it; data corruption runs on the GPU and is not counted")
    print(f"  {overhead:.0f} s start-up per trial (--trainer-overhead; the full preset runs each trial as a TorchTrainer)")
    print(f"  epochs per trial: no early stopping = {FULL_MAX_EPOCHS} each; ASHA (grace {FULL_GRACE}, reduction {FULL_REDUCTION}) ="
          f" a third of the trials goes on at each rung: {sum(epochs_asha)} epochs in all ({sum(epochs_asha) / FULL_TRIALS:.1f} per trial)")
    print("  excluded: booting GPU nodes and their setup (~5-10 min after `ray up`/scale-up), the final hold-out scoring on the head\n")
    rows = []
    for gpus in (1, 4, 16):
        asha_wall, asha_cost = full_estimate(cost, gpus, args.gpu_tflops, overhead, epochs_asha)
        full_wall, full_cost = full_estimate(cost, gpus, args.gpu_tflops, overhead, [FULL_MAX_EPOCHS] * FULL_TRIALS)
        rows.append({"GPUs (g5.xlarge)": str(gpus), "concurrent trials": str(min(FULL_TRIALS, gpus * TRIALS_PER_GPU)), "wall, ASHA": hours(asha_wall),
                     "cost, ASHA": f"${asha_cost:.0f}", "wall, all 60 epochs": hours(full_wall), "cost, all 60 epochs": f"${full_cost:.0f}"})
    cpu_asha, cpu_all = this_machine_estimate(cost, overhead, epochs_asha)
    rows.append(dict(zip(rows[0], ["this machine, 2 CPUs", "2", hours(cpu_asha), "-", hours(cpu_all), "-"])))
    print("\n".join(markdown_table(rows)))
    print(f"\n(cost: on-demand list prices, g5.xlarge ${G5_XLARGE_PER_HOUR}/h per GPU + m5.xlarge head ${M5_XLARGE_PER_HOUR}/h;"
          " spot workers cost ~60% less.)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    data = data_path(args.data)
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        slice_path = workdir / "fer2013-slice.csv"
        slice_path.write_bytes(read_csv_head(data, 600))
        began = time.perf_counter()
        by_layout = study_layouts(slice_path, workdir, args)
        progress("counting FLOPs of the full search's models, then timing one CPU epoch of its default model (base_width 32), 1 thread")
        cost = measure_full_cost(slice_path)
        elapsed = time.perf_counter() - began
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_throughput(by_layout, args)
    print_full_estimate(cost, pooled(by_layout[0]).overhead_s, args)
    print(f"\nbenchmark time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
