"""A table's HTML report: ``results/<table>.html``.

The page holds the table with its intervals and findings (the Markdown ``reproduce`` wrote), its
figure, and for each row the executed notebook of every step, rendered by nbconvert with outputs
kept and progress bars collapsed to their last state. The rendered notebooks go to
``runs/report/<scale>/<table>/`` beside the runs they show; the page links them relatively, so it
opens from the checkout that ran the table, in any browser, without a server.
"""

from __future__ import annotations

import copy
import html
import os
import re
from pathlib import Path

import mistune
import nbformat

from . import runs, tables
from .paths import project_root

WIDGET = "application/vnd.jupyter.widget-view+json"


def collapse_progress(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` whose progress output shows its last state only: consecutive stream
    outputs of a cell are merged, each line keeps what followed its last carriage return (how
    tqdm redraws a bar), and widget bars fall back to their plain-text form."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        merged: list = []
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and merged and merged[-1].get("name") == out.name:
                merged[-1].text += out.text
                continue
            if out.output_type == "display_data" and WIDGET in out.get("data", {}):
                out.data.pop(WIDGET)
            merged.append(out)
        for out in merged:
            if out.output_type == "stream":
                out.text = "\n".join(line.rsplit("\r", 1)[-1] for line in out.text.split("\n"))
                out.text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out.text)  # cursor moves
        cell.outputs = merged
    return nb


def render_notebook(source: Path, target: Path) -> Path:
    """``source`` (an executed notebook) as a standalone HTML page at ``target``."""
    from nbconvert import HTMLExporter  # heavy; only the report needs it

    body, _ = HTMLExporter().from_notebook_node(collapse_progress(nbformat.read(source, 4)))
    target.parent.mkdir(parents=True, exist_ok=True)
    runs.write_atomic(target, body)
    return target


def write(table: str, scale: str = "tiny", *, root: Path | None = None, seeds: int = 1) -> Path:
    """Render every finished step's notebook and write the table's page; returns its path."""
    root = (root or project_root()).resolve()
    stem = tables.results_name(table, seeds)
    out = tables.results_dir(root, scale)
    md = out / f"{stem}.md"
    if not md.exists():
        raise FileNotFoundError(
            f"{md} does not exist: run `vidrepro reproduce {table} --scale {scale}"
            + (f" --seeds {seeds}" if seeds > 1 else "")
            + "` first"
        )
    pages = root / "runs" / "report" / scale / stem
    rows: dict[str, list[str]] = {}
    for _, r in tables.step_status(table, scale, root=root, seeds=seeds).iterrows():
        tag = f"{r['row']} seed {r['seed']}" if seeds > 1 else r["row"]
        if r["status"] != "finished":
            rows.setdefault(tag, []).append(f"{html.escape(r['step'])} ({r['status']})")
            continue
        folder = root / r["folder"]
        name = Path(r["notebook"]).name
        notebook = folder / (name if name.endswith(".ipynb") else f"{name}.ipynb")
        page = render_notebook(notebook, pages / tag.replace(" ", "_") / f"{r['step']}.html")
        link = Path(os.path.relpath(page, out)).as_posix()
        rows.setdefault(tag, []).append(f'<a href="{link}">{html.escape(r["step"])}</a>')
    markdown = mistune.create_markdown(plugins=["table"])
    figure = out / f"{stem}.png"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(stem)}: vidrepro report</title>",
        f"<style>{STYLE}</style></head><body>",
        markdown(md.read_text()),
        f'<figure><img src="{figure.name}" alt="{html.escape(stem)} figure"></figure>'
        if figure.exists()
        else "",
        "<h2>Runs</h2>",
        "<p>Each step's executed notebook, with its curves and samples:</p>",
        '<table class="runs"><thead><tr><th>row</th><th>steps</th></tr></thead><tbody>',
        *(f"<tr><td>{html.escape(t)}</td><td>{' · '.join(s)}</td></tr>" for t, s in rows.items()),
        "</tbody></table></body></html>",
    ]
    path = out / f"{stem}.html"
    runs.write_atomic(path, "\n".join(parts) + "\n")
    return path


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 80rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
thead th { background: #f2f2f2; }
img { max-width: 100%; }
code { background: #f5f5f5; padding: 0 0.2rem; }
"""
