"""The GPU check's report: one Markdown table per section with its notes, rewritten (with a CSV beside it)
after every section, so a run cut short still leaves what it measured."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.tables import markdown_table


@dataclass
class Section:
    """One table of the report, with the lines that say how it was measured and what was cut."""

    key: str
    title: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def progress(message: str) -> None:
    print(f"[gpu] {message}", file=sys.stderr, flush=True)


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

