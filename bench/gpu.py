"""The prepared GPU check: the cuda tests, training speed, trials sharing one GPU, and a shipped recipe at GPU scale.

The GPU machine has torch but neither Ray nor Optuna (nor bm3d), so this script uses denoise_core alone and packs
trials as plain processes, the way fractional GPUs place them. It keeps to ``--budget-s`` (default 420 s, so the
whole run stays under 8 minutes): each section gets what the later ones leave it, and what does not fit is
skipped or shortened, saying so in its table. Every section prints one Markdown table; all of them go to
``--out`` (Markdown) and a CSV beside it, rewritten after each section.

Sections: (a) ``pytest -m cuda`` on tests/test_cuda.py and tests/test_ddp.py; (b) training images/s of the
smallest, default and largest models of the ``full`` search at batch 128, 512 and 2048: eager, eager on
channels-last weights, and ``torch.compile``, with peak GPU memory, in fp16 autocast as ``fit`` trains (``--precisions
fp16,bf16,fp32`` measures the others too); (c) 1, 2, 4 and 8 processes each running
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
instead of the packed one. The sections live in ``bench/gpu_check/``, one module each; this file is the command.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.gpu_check.cuda_tests import run_cuda_tests  # noqa: E402
from bench.gpu_check.data import PACK_TRAIN_FACES, pack_data, read_faces_npz  # noqa: E402
from bench.gpu_check.models import FULL_PRESET  # noqa: E402
from bench.gpu_check.recipe import SCORE_RESERVE_S, bench_recipe  # noqa: E402
from bench.gpu_check.report import Section, machine_lines, progress, render, write_report  # noqa: E402
from bench.gpu_check.sharing import bench_sharing  # noqa: E402
from bench.gpu_check.throughput import FIT_PRECISIONS, PRECISIONS, bench_throughput  # noqa: E402
from denoise_core.data import DataError, DataNotFound, Splits, load_splits, split_faces  # noqa: E402
from denoise_core.settings import load_yaml_file  # noqa: E402

SECTIONS = "abcd"
RESERVE_S = {"a": 110.0, "b": 140.0, "c": 90.0, "d": 80.0}  # what a section is promised before the earlier ones start


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


def precision_list(text: str) -> tuple[str, ...]:
    """``fp16,bf16`` as a tuple, refusing a precision section b cannot measure."""
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [part for part in chosen if part not in PRECISIONS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more of {', '.join(PRECISIONS)}, comma-separated")
    return chosen


def run_section(key: str, deadline: float, args: argparse.Namespace, preset: dict[str, Any], splits: Splits | None) -> Section:
    if key == "a":
        return run_cuda_tests(min(150.0, deadline - time.perf_counter()), args.out.with_name(f"{args.out.stem}-pytest.log"))
    if key == "b":
        return bench_throughput(deadline, preset, args.precisions)
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
    parser.add_argument("--precisions", type=precision_list, default=FIT_PRECISIONS,
                        help=f"training precisions section b measures, comma-separated, of {', '.join(PRECISIONS)} (default "
                        f"{','.join(FIT_PRECISIONS)}: fit's amp)")
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
