"""Notebook hygiene: the rules every committed notebook keeps, checked by CI and the tests.

- outputs stripped (diffs stay readable, no stale numbers in git);
- exactly one cell tagged ``parameters`` (papermill injects after it) whose values are the tiny
  defaults in ``params/<paper>/tiny/<name>.yaml``;
- a first markdown cell saying what the notebook reproduces, and a Colab setup cell;
- thin: no function in a notebook longer than a few lines (it belongs in ``lib/`` with a test).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

from . import colab
from . import params as P
from .params import Params

MAX_FUNCTION_LINES = 5
COLAB_MARKER = "google.colab"
KIT = "kit"  # the group of notebooks directly under notebooks/ (self-check, data tour)


def identify(path: Path) -> tuple[str, str]:
    """``notebooks/<paper>/<name>.ipynb`` -> (paper, name); ``notebooks/<name>.ipynb`` ->
    ("kit", name). The pair names the params files and the parameter model."""
    path = Path(path).resolve()
    group = path.parent.name
    return (KIT if group == "notebooks" else group), path.stem


def locate(root: Path, paper: str, name: str) -> Path:
    """Inverse of :func:`identify`."""
    folder = root / "notebooks" if paper == KIT else root / "notebooks" / paper
    return folder / f"{name}.ipynb"


def load_params(
    root: Path,
    path: Path,
    scale: str,
    params_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Params:
    """The validated params of notebook ``path`` at ``scale`` (or from ``params_file``)."""
    paper, name = identify(path)
    file = params_file or P.params_path(root, paper, name, scale)
    return P.load(P.schema_for(paper, name), file, overrides)


def read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def parameters_cell(nb: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]


def parameter_values(nb: dict[str, Any]) -> dict[str, Any]:
    """The literal assignments of the ``parameters`` cell (``name = <literal>``)."""
    cells = parameters_cell(nb)
    if len(cells) != 1:
        raise ValueError(f"expected one cell tagged 'parameters', found {len(cells)}")
    values = {}
    for node in ast.parse(source(cells[0])).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name):
                    values[t.id] = ast.literal_eval(node.value)
    return values


def problems(path: Path, root: Path | None = None) -> list[str]:
    """Every rule ``path`` breaks, as messages naming the notebook (empty when clean). With the
    project ``root``, the parameters cell must also equal the tiny params file."""
    try:
        nb = read(path)
    except (OSError, json.JSONDecodeError) as e:
        return [f"{path}: not a readable notebook ({e})"]
    cells = nb.get("cells", [])
    out = []
    if not cells or cells[0].get("cell_type") != "markdown":
        out.append(f"{path}: the first cell must be markdown saying what the notebook reproduces")
    if not any(COLAB_MARKER in source(c) for c in cells if c.get("cell_type") == "code"):
        out.append(f"{path}: no Colab setup cell (a code cell installing the kit on Colab)")
    n = len(parameters_cell(nb))
    if n != 1:
        out.append(f"{path}: {n} cells tagged 'parameters' (want exactly 1)")
    for i, c in enumerate(cells):
        if c.get("cell_type") != "code":
            continue
        if c.get("outputs") or c.get("execution_count") is not None:
            out.append(f"{path}: cell {i} has outputs or an execution count (strip them)")
        out += [f"{path}: cell {i}: {msg}" for msg in _long_functions(source(c))]
    if root is not None and n == 1:
        out += _differs_from_tiny(root, path, nb)
    return out


BADGE = re.compile(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)")


def colab_problems(path: Path, root: Path) -> list[str]:
    """The Colab cell and badge must be the ones :mod:`vidrepro.colab` writes for ``path``."""
    nb, (group, _) = read(path), identify(path)
    cells = [c for c in nb.get("cells", []) if COLAB_MARKER in source(c)]
    rel = _in_repository(path, root)
    out = []
    if not cells or source(cells[0]) != colab.cell(group):
        out.append(f"{path}: Colab cell is not vidrepro.colab.cell({group!r}) (--fix writes it)")
    if colab.badge(rel) not in source(nb["cells"][0]):
        out.append(f"{path}: first cell lacks vidrepro.colab.badge({rel!r}) (--fix writes it)")
    return out


def _in_repository(path: Path, root: Path) -> str:
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


def write_colab(path: Path, root: Path) -> bool:
    """Rewrite ``path``'s Colab cell and badge as :mod:`vidrepro.colab` has them; True when the
    file changed."""
    text = Path(path).read_text()
    nb, (group, _) = json.loads(text), identify(path)
    rel = _in_repository(path, root)
    for c in nb["cells"]:
        if c.get("cell_type") == "code" and COLAB_MARKER in source(c):
            c["source"] = colab.cell(group).splitlines(keepends=True)
            break
    first = nb["cells"][0]
    first["source"] = BADGE.sub(lambda _: colab.badge(rel), source(first)).splitlines(keepends=True)
    return _save(path, text, nb)


def _differs_from_tiny(root: Path, path: Path, nb: dict[str, Any]) -> list[str]:
    try:
        cell = parameter_values(nb)
        tiny = load_params(root, path, "tiny").model_dump(mode="json")
    except (ValueError, SyntaxError) as e:
        return [f"{path}: {e}"]
    diff = sorted(k for k in cell.keys() | tiny.keys() if cell.get(k) != tiny.get(k))
    return [f"{path}: parameters cell differs from its tiny params on {diff}"] if diff else []


def _long_functions(code: str) -> list[str]:
    # IPython magics and shell escapes are not Python: parse them as `pass` at their indent.
    lines = [
        ln[: len(ln) - len(ln.lstrip())] + "pass" if ln.lstrip().startswith(("!", "%")) else ln
        for ln in code.splitlines()
    ]
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as e:
        return [f"does not parse: {e}"]
    return [
        f"function {node.name!r} is {node.end_lineno - node.lineno + 1} lines; "
        f"move it to lib/ with a test (limit {MAX_FUNCTION_LINES})"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def strip(path: Path) -> bool:
    """Remove outputs and execution counts in place; True when the file changed."""
    text = Path(path).read_text()
    nb = json.loads(text)
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            c["outputs"], c["execution_count"] = [], None
        c.get("metadata", {}).pop("execution", None)
    return _save(path, text, nb)


def _save(path: Path, text: str, nb: dict[str, Any]) -> bool:
    """Write ``nb`` as nbformat lays it out when it differs from ``text``; True if it did."""
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        Path(path).write_text(new)
    return new != text


def all_notebooks(root: Path) -> list[Path]:
    return sorted(
        p for p in (root / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
    )
