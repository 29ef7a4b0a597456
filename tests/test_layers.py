"""The layering rules of docs/architecture.md that imports can show: papers never import each
other; the shared layers (metrics, data, video, text, rl, training) import no paper; the library
never imports the runner (runs, tables, cli, notebooks, stats, report, colab, live)."""

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "lib" / "vidrepro"
PAPERS = {"blip2_video", "bmhrl", "merlot", "object_states"}
SHARED = {
    "metrics",
    "data",
    "video",
    "text",
    "rl",
    "training",
    "history",
    "checkpoints",
    "params",
    "paths",
    "plots",
    "launch",
    "determinism",
}
RUNNER = {"runs", "tables", "cli", "notebooks", "stats", "report", "colab", "live", "kit"}


def imported(path: Path, package: list[str]) -> set[str]:
    """Every ``vidrepro.*`` name a module imports, relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names |= {module} | {f"{module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return {n for n in names if n.startswith("vidrepro.")}


def layer_imports() -> list[tuple[str, str, str]]:
    """(importing layer, imported layer, 'module -> name') for every cross-layer import."""
    out = []
    for path in sorted(LIB.rglob("*.py")):
        parts = ["vidrepro", *path.relative_to(LIB).with_suffix("").parts]
        package = parts if path.name == "__init__.py" else parts[:-1]
        if path.name == "__init__.py":
            parts = parts[:-1]
        src = parts[1] if len(parts) > 1 else ""
        for name in imported(path, package):
            dst = name.split(".")[1]
            if dst != src:
                out.append((src, dst, f"{'.'.join(parts)} -> {name}"))
    return out


def test_the_checker_sees_relative_and_absolute_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from ..metrics.cider import CiderD\nimport vidrepro.video\nfrom . import x\n")
    assert imported(f, ["vidrepro", "bmhrl"]) == {
        "vidrepro.metrics.cider",
        "vidrepro.metrics.cider.CiderD",
        "vidrepro.video",
        "vidrepro.bmhrl",
        "vidrepro.bmhrl.x",
    }


@pytest.mark.parametrize(
    "rule, allowed",
    [
        ("papers never import each other", lambda s, d: not (s in PAPERS and d in PAPERS)),
        ("shared layers import no paper", lambda s, d: not (s in SHARED and d in PAPERS)),
        (
            "the library never imports the runner",
            lambda s, d: not (s in PAPERS | SHARED and d in RUNNER),
        ),
    ],
)
def test_layering(rule, allowed):
    broken = [line for s, d, line in layer_imports() if not allowed(s, d)]
    assert not broken, f"{rule}:\n" + "\n".join(broken)


def test_every_module_belongs_to_a_layer():
    top = {p.stem for p in LIB.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in LIB.iterdir() if (p / "__init__.py").exists()
    }
    assert top <= PAPERS | SHARED | RUNNER, f"no layer for {sorted(top - PAPERS - SHARED - RUNNER)}"
