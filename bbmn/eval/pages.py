"""The report's HTML pages: the table step's CSV files as one fragment, and the overview page
with the tables and every figure (PNG, inlined), so the report's first page needs no other file.

Kept apart from :mod:`bbmn.eval.plots`, which draws the figures: a page only arranges files that
the table and plot steps wrote.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bbmn.errors import BbmnError
from bbmn.eval.tables import render_html
from bbmn.io import atomic_path


def _caption_of(csv_path: Path) -> str:
    """The caption the table step wrote as the first line (``**...**``) of the Markdown file."""
    md = csv_path.with_suffix(".md")
    if md.is_file():
        first = md.read_text().splitlines()[:1]
        if first and first[0].startswith("**"):
            return first[0].strip("*")
    return csv_path.stem.capitalize()


#: The pages' own style, scoped to ``.bbmn-report`` so that it changes nothing else in the report.
STYLE = "\n".join([
    "<style>",
    ".bbmn-report table{border-collapse:collapse;font-size:12px;margin:0 0 4px 0}",
    ".bbmn-report th,.bbmn-report td{border-bottom:1px solid #ddd;padding:2px 8px;text-align:center}",
    ".bbmn-report td:first-child,.bbmn-report th:first-child{text-align:left}",
    ".bbmn-report tr.kind td{font-style:italic;color:#666;text-align:left}",
    ".bbmn-report p.caption,.bbmn-report figcaption{font-size:11px;color:#444;max-width:60em}",
    ".bbmn-report figure{margin:16px 0}",
    ".bbmn-report img{max-width:100%;height:auto}",
    # inside snakemake's report, widen the description column that holds this page
    "div.prose:has(.bbmn-report){max-width:56rem}",
    "</style>"])

#: Figure file name prefix -> the line shown under it on the report's overview page.
FIGURE_CAPTIONS = {
    "comparison": "Test score per dataset: mean over seeds with the population std as error bar, "
                  "our models beside the published reference rows (hatched).",
    "pretrain_": "Pre-training: reconstruction loss, and the validation accuracy of each masked "
                 "field beside always predicting its most common class (dotted).",
    "roc_": "ROC curves of the test predictions, one panel per model, one line per seed "
            "(tasks pooled for multi-task sets).",
}


def tables_fragment(table_csvs: Sequence[str | Path]) -> str:
    """The tables (``classification.csv``, ``regression.csv`` of ``bbmn table``) as HTML, each
    with the caption the table step wrote."""
    parts = []
    for path in map(Path, table_csvs):
        if not path.is_file():
            raise BbmnError(f"table file {path} does not exist")
        caption = _caption_of(path)
        if path.stat().st_size == 0:
            parts.append(f"<h3>{html.escape(path.stem.capitalize())}</h3>"
                         f"<p class=\"caption\">No {html.escape(path.stem)} datasets in this run.</p>")
            continue
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise BbmnError(f"cannot read table {path}: {exc}") from None
        parts.append(f"<h3>{html.escape(path.stem.capitalize())}</h3>")
        parts.append(render_html(frame, caption))
    return "\n".join(parts)


def figure_fragment(png: str | Path) -> str:
    """A PNG as an HTML ``<figure>`` with the image inlined (a data URI) and its caption."""
    png = Path(png)
    try:
        data = png.read_bytes()
    except OSError as exc:
        raise BbmnError(f"cannot read figure {png}: {exc}") from None
    if not data.startswith(b"\x89PNG"):
        raise BbmnError(f"{png} is not a PNG file")
    caption = next((c for prefix, c in FIGURE_CAPTIONS.items() if png.name.startswith(prefix)), png.stem)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    return (f"<figure><img alt=\"{html.escape(png.name)}\" src=\"{uri}\">"
            f"<figcaption>{html.escape(caption)} ({html.escape(png.name)})</figcaption></figure>")


def _write_page(body: list[str], out: str | Path) -> str:
    """``body`` with the style in one ``.bbmn-report`` block, atomically; returns the path."""
    text = "\n".join(["<div class=\"bbmn-report\">", STYLE, *body, "</div>"]) + "\n"
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    return str(out)


def write_tables_html(table_csvs: Sequence[str | Path], out: str | Path) -> str:
    """The tables as one HTML fragment with its own style, so it reads the same alone and
    inside the report."""
    return _write_page([tables_fragment(table_csvs)], out)


def write_overview_html(table_csvs: Sequence[str | Path], figures: Sequence[str | Path],
                        out: str | Path) -> str:
    """The report's first page: the tables, then every figure (PNG, inlined), as one HTML
    fragment that needs no other file."""
    return _write_page([tables_fragment(table_csvs), *map(figure_fragment, figures)], out)
