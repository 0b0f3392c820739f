"""Rendering a report's sections as one self-contained HTML page and as Markdown.

The HTML embeds every figure as a base64 data URI and carries its own CSS, so the single file reads the same
offline, mailed, or copied off a cluster; the Markdown links the PNG files that sit beside it.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass(frozen=True)
class Text:
    text: str
    kind: str = "p"  # "p", "note" (muted), "warning"


@dataclass(frozen=True)
class Table:
    frame: pd.DataFrame
    caption: str = ""
    markdown_rows: int | None = 20  # the Markdown summary shows at most this many rows
    html_rows: int | None = None  # and the HTML (None: all)


@dataclass(frozen=True)
class Figure:
    file: str  # PNG file name inside the report directory
    caption: str


@dataclass(frozen=True)
class Section:
    title: str
    blocks: list = field(default_factory=list)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
.sub{color:#555;margin-top:0}.note{color:#555;font-size:.92em}.warning{color:#9a3412;background:#fff7ed;padding:.4em .6em;border-left:3px solid #ea580c}
.scroll{overflow-x:auto;margin:.6em 0}table{border-collapse:collapse;font-size:.82em}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right;white-space:nowrap}th{background:#f5f5f7}
td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;font-weight:600;padding:.3em 0}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
nav ul{columns:2;font-size:.92em}
"""


def fmt(value) -> str:
    """Numbers at a precision a reader can compare (4 significant digits), missing values blank."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalars
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"
    return str(value)


def text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.apply(lambda column: column.map(fmt)) if len(frame) else frame.astype(str)


def html_table(table: Table) -> str:
    frame = text_frame(table.frame if table.html_rows is None else table.frame.head(table.html_rows))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in frame.itertuples(index=False))
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    more = len(table.frame) - len(frame)
    note = f'<p class="note">{more} more rows in the CSV.</p>' if more > 0 else ""
    return f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{note}'


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def anchor(title: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")


def render_html(title: str, subtitle: str, sections: list[Section], out_dir: Path) -> str:
    """The whole report as one HTML document; figures are read from ``out_dir`` and embedded."""
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="sub">{html.escape(subtitle)}</p>', "<nav><ul>"]
    parts += [f'<li><a href="#{anchor(s.title)}">{html.escape(s.title)}</a></li>' for s in sections]
    parts.append("</ul></nav>")
    for section in sections:
        parts.append(f'<h2 id="{anchor(section.title)}">{html.escape(section.title)}</h2>')
        for block in section.blocks:
            if isinstance(block, Text):
                css = "" if block.kind == "p" else f' class="{block.kind}"'
                parts.append(f"<p{css}>{html.escape(block.text)}</p>")
            elif isinstance(block, Table):
                parts.append(html_table(block))
            elif isinstance(block, Figure):
                parts.append(f'<figure><img src="{data_uri(out_dir / block.file)}" alt="{html.escape(block.caption)}">'
                             f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n" + "\n".join(parts) + "\n</body></html>\n")


def markdown_table(frame: pd.DataFrame, max_rows: int | None = None) -> str:
    shown = frame if max_rows is None else frame.head(max_rows)
    cells = text_frame(shown)
    escape = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731 - local shorthand
    lines = ["| " + " | ".join(escape(c) for c in cells.columns) + " |", "|" + "---|" * len(cells.columns)]
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in cells.itertuples(index=False)]
    if max_rows is not None and len(frame) > max_rows:
        lines.append(f"\n({len(frame) - max_rows} more rows in the CSV and in index.html)")
    return "\n".join(lines)


def render_markdown(title: str, subtitle: str, sections: list[Section]) -> str:
    parts = [f"# {title}", "", subtitle, ""]
    for section in sections:
        parts += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                parts += [f"> {block.text}" if block.kind == "warning" else (f"_{block.text}_" if block.kind == "note" else block.text), ""]
            elif isinstance(block, Table):
                if block.caption:
                    parts += [f"**{block.caption}**", ""]
                parts += [markdown_table(block.frame, block.markdown_rows), ""]
            elif isinstance(block, Figure):
                parts += [f"![{block.caption}]({block.file})", "", f"_{block.caption}_", ""]
    return "\n".join(parts)
