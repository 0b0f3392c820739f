"""Quality benchmark: model files against every classical filter on the fixed noisy hold-out, as tables.

    python bench/quality.py [--model FILE ...] [--replaces FILE] [--data PATH] [--faces N] [--card models/README.md]

Without ``--model`` it evaluates the shipped models (``models/fer2013-{blind,impulse,gauss}.pt``).
Prints the bar table (at each condition, the most specialised model trained for its noise kind against its
strongest classical rival, margins measured on the same faces) and every model's and filter's PSNR / SSIM at
every condition. ``--replaces OLD.pt`` adds the first model against the file it replaced at every synthetic
condition (a new default model may lose at most 0.3 dB there). ``--card`` writes the same text into
the model card between its ``<!-- quality:start -->`` and ``<!-- quality:end -->`` markers, so the card
always shows this script's output. Classical scores are cached in $FACESTUDY_CACHE/baseline-scores: the
first run on a machine pays for every filter at 27 conditions (63 minutes measured on one thread of a 2-core machine
busy with two trainings; BM3D, the adaptive median and inpainting cost most), later runs take about ten minutes on
one thread, most of it the four models.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from denoise_core.cli import ArgumentParser, run_cli, setup_logging  # noqa: E402
from denoise_core.data import ENV_VAR, load_splits, resolve_data_path  # noqa: E402
from denoise_core.denoise import SHIPPED_MODELS  # noqa: E402
from denoise_core.errors import MissingFile  # noqa: E402
from results.curves import plot_curves  # noqa: E402
from results.quality import (  # noqa: E402
    QualityOptions, card_difference, evaluate_model_files, model_card_section, replace_between_markers, section_between_markers,
)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="bench/quality.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", help="model file; repeat for several (default: the shipped models)")
    parser.add_argument("--data", help=f"FER2013 file (default: ${ENV_VAR})")
    parser.add_argument("--faces", type=int, help="hold-out faces for the model and the fast filters (default: all)")
    parser.add_argument("--slow-faces", type=int, default=QualityOptions.slow_faces, help="hold-out faces for NLM and BM3D")
    parser.add_argument("--replaces", type=Path, help="the model file the first model replaced: also print the first model against it "
                                                      "at every synthetic condition (the bar: at most 0.3 dB below)")
    parser.add_argument("--card", type=Path, help="also write the tables into this model card (between its markers)")
    parser.add_argument("--check-card", type=Path, help="exit 1 unless this card's tables equal this run's (to the last printed digit)")
    parser.add_argument("--figure", type=Path, help="also draw the robustness curves (PSNR and SSIM, every model and filter) into this PNG")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)

    def run() -> int:
        setup_logging(args.verbose)
        models = args.model or list(SHIPPED_MODELS)
        for model in [*models, *([args.replaces] if args.replaces else [])]:
            if not model.is_file():
                raise MissingFile(f"model file {model} does not exist; pass --model PATH (a model.pt from training or a study)")
        for card in (args.card, args.check_card):
            if card is not None and not card.is_file():
                raise MissingFile(f"model card {card} does not exist; create it with the quality markers first")
        if args.threads:
            torch.set_num_threads(args.threads)
        splits = load_splits(resolve_data_path(args.data))
        started = time.perf_counter()
        quality = evaluate_model_files(models, splits, QualityOptions(faces=args.faces, slow_faces=args.slow_faces, replaces=args.replaces))
        command = " ".join(["python bench/quality.py", *(f"--model {_shown(m)}" for m in args.model or []),
                            *([f"--replaces {_shown(args.replaces)}"] if args.replaces else []),
                            *([f"--faces {args.faces}"] if args.faces else []),
                            *([f"--slow-faces {args.slow_faces}"] if args.slow_faces != QualityOptions.slow_faces else [])])
        section = model_card_section(quality, command, len(splits.test_unique[: args.faces]))
        print(section)
        print(f"\n({time.perf_counter() - started:.0f} s on {torch.get_num_threads()} torch threads)")
        if args.figure is not None:
            plot_curves(quality.scores, args.figure, f"shipped models vs classical filters on the fixed hold-out ({len(splits.test_unique[: args.faces])} faces)")
            print(f"wrote the robustness curves to {args.figure}")
        if args.card is not None:
            args.card.write_text(replace_between_markers(args.card.read_text(), section))
            print(f"wrote the tables into {args.card}")
        if args.check_card is not None:
            difference = card_difference(section_between_markers(args.check_card.read_text()), section)
            if difference:
                print(f"bench/quality.py: {args.check_card} does not match this run: {difference}", file=sys.stderr)
                return 1
            print(f"{args.check_card} matches this run")
        return 0

    run_cli(run, "bench/quality.py")


def _shown(path: Path) -> str:
    """The path as a reader of the card would type it: relative to the repository when inside it."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    main()
