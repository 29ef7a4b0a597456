"""A scratch project (two tiny notebooks, their params and a table) for testing the runner
without any paper's code: fast to execute, and able to fail, sleep or count its executions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import nbformat

from vidrepro import params as P


class MakeParams(P.Params):
    size: int
    fail: bool = False
    seed: int = 0


class ScoreParams(P.Params):
    artifact: str
    scale: float = 1.0


def register() -> None:
    P.register("demo", "01_make", MakeParams)
    P.register("demo", "02_score", ScoreParams)


MAKE = """
import time
from pathlib import Path
from vidrepro import runs
with open(Path.cwd() / "executions.log", "a") as f:
    f.write("make\\n")
while (Path.cwd() / "hold").exists():  # lets a test kill the step mid-run
    time.sleep(0.1)
if fail:
    raise ValueError("boom")
from tqdm.auto import tqdm
from vidrepro.history import History
curves = History().tensorboard(runs.run_dir() / "curves")
bar = tqdm(range(size), desc="make")
for i in bar:
    curves.log(i, {"loss": 1 / (i + 1)})
    bar.set_postfix(loss=f"{1 / (i + 1):.2f}")
curves.close()
out = runs.run_dir() / "artifact.txt"
out.write_text("x" * (size + seed))
runs.log_output("artifact", out)
runs.log_metrics(size=size)
"""

SCORE = """
from pathlib import Path
from vidrepro import runs
with open(Path.cwd() / "executions.log", "a") as f:
    f.write("score\\n")
text = Path(artifact).read_text()
score = len(text) * scale / 100
runs.log_metrics(score=score, chars=len(text))
# ten test items around the score (offsets sum to 0): what the tables bootstrap
offsets = [0.01 * (i - 4.5) for i in range(10)]
runs.log_items({"item": [f"q{i}" for i in range(10)], "score": [score + d for d in offsets]})
"""

TABLE = """
title: Demo table
paper: demo
columns: [Variant]
metrics: [score]
metric_scale: 100
rows:
  - id: plain
    columns: {Variant: plain}
    steps:
      - {id: make, notebook: 01_make}
      - {id: score, notebook: 02_score, params: {artifact: "${make.artifact}"}}
  - id: scaled
    columns: {Variant: scaled}
    steps:
      - {id: make, notebook: 01_make}
      - id: score
        notebook: 02_score
        params: {artifact: "${make.artifact}"}
        tiny: {scale: 2.0}
        full: {scale: 3.0}
findings:
  - {claim: scaling raises the score, metric: score, pairs: [[scaled, plain]]}
  - {claim: scaling lowers the score, metric: score, pairs: [[plain, scaled]]}
"""


def notebook(params_src: str, body: str) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Demo\nA scratch notebook for the runner's tests."),
        nbformat.v4.new_code_cell(
            'import sys\nif "google.colab" in sys.modules:\n    %pip install -q vidrepro'
        ),
        nbformat.v4.new_code_cell(params_src, metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(textwrap.dedent(body).strip()),
    ]
    return nb


def build(root: Path) -> Path:
    """Write the demo project under ``root`` and return it."""
    (root / "notebooks" / "demo").mkdir(parents=True)
    nbformat.write(
        notebook("size = 3\nfail = False\nseed = 0", MAKE),
        root / "notebooks" / "demo" / "01_make.ipynb",
    )
    nbformat.write(
        notebook('artifact = ""\nscale = 1.0', SCORE),
        root / "notebooks" / "demo" / "02_score.ipynb",
    )
    for scale in P.SCALES:
        d = root / "params" / "demo" / scale
        d.mkdir(parents=True)
        (d / "01_make.yaml").write_text("size: 3\nfail: false\nseed: 0\n")
        (d / "02_score.yaml").write_text('artifact: ""\nscale: 1.0\n')
    (root / "params" / "tables").mkdir(parents=True)
    (root / "params" / "tables" / "demo.yaml").write_text(TABLE)
    (root / "results" / "published").mkdir(parents=True)
    (root / "results" / "published" / "demo.yaml").write_text(
        "source: made up for the test\nrows:\n  plain: {score: 2.5}\n"
    )
    return root


def executions(root: Path) -> list[str]:
    log = root / "executions.log"
    return log.read_text().split() if log.exists() else []
