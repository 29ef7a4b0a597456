"""Result tables: a table spec is rows of notebook chains; running them fills ``results/``.

``params/tables/<table>.yaml`` lists rows; each row is a chain of notebook steps with parameter
overrides, where a later step may use an earlier step's output as ``${<step id>.<output name>}``
(e.g. a checkpoint). Steps live in content-addressed folders
``runs/<scale>/<paper>/<notebook>/<key>/`` rather than per table row: the same step (say, the
pretraining every row starts from) is run once and shared by every row and table that asks for
it with the same inputs, and rerunning an unchanged table only reads the finished records.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from . import params as P
from . import notebooks, runs
from .paths import project_root

REF = re.compile(r"\$\{([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Strict):
    id: str
    notebook: str = Field(description="notebook name within the table's paper, e.g. 02_finetune")
    params: dict[str, Any] = {}
    tiny: dict[str, Any] = {}
    full: dict[str, Any] = {}

    def overrides(self, scale: str) -> dict[str, Any]:
        return {**self.params, **(self.tiny if scale == "tiny" else self.full)}


class RowSpec(_Strict):
    id: str
    columns: dict[str, Any] = {}
    steps: list[StepSpec]
    metrics_from: str | None = Field(None, description="step whose metrics fill the row "
                                                       "(default: the last)")

    @model_validator(mode="after")
    def _check_steps(self) -> RowSpec:
        ids = [s.id for s in self.steps]
        if not ids:
            raise ValueError(f"row {self.id!r} has no steps")
        if len(set(ids)) != len(ids):
            raise ValueError(f"row {self.id!r}: step ids repeat: {ids}")
        for i, step in enumerate(self.steps):
            for ref_step, _ in _references(step):
                if ref_step not in ids[:i]:
                    raise ValueError(f"row {self.id!r}, step {step.id!r}: ${{{ref_step}...}} "
                                     f"names no earlier step (earlier: {ids[:i]})")
        if self.metrics_from is not None and self.metrics_from not in ids:
            raise ValueError(f"row {self.id!r}: metrics_from {self.metrics_from!r} is not a step")
        return self

    @property
    def metrics_step(self) -> str:
        return self.metrics_from or self.steps[-1].id


class Finding(_Strict):
    """A claim of the paper as pairs of rows: in each pair the first should score higher."""

    claim: str
    metric: str
    pairs: list[tuple[str, str]]


class TableSpec(_Strict):
    title: str
    paper: str
    description: str = ""
    columns: list[str] = Field([], description="descriptive columns, in order")
    metrics: list[str]
    metric_scale: float = Field(1.0, description="multiply metrics by this (e.g. 100)")
    rows: list[RowSpec]
    findings: list[Finding] = []

    @model_validator(mode="after")
    def _check_rows(self) -> TableSpec:
        ids = [r.id for r in self.rows]
        if len(set(ids)) != len(ids):
            raise ValueError(f"row ids repeat: {ids}")
        for row in self.rows:
            extra = set(row.columns) - set(self.columns)
            if extra:
                raise ValueError(f"row {row.id!r}: columns {sorted(extra)} are not in the "
                                 f"table's columns {self.columns}")
        for f in self.findings:
            unknown = {r for pair in f.pairs for r in pair} - set(ids)
            if unknown or f.metric not in self.metrics:
                raise ValueError(f"finding {f.claim!r}: unknown rows {sorted(unknown)} or "
                                 f"metric {f.metric!r}")
        return self


class Published(_Strict):
    source: str
    rows: dict[str, dict[str, float | str]] = {}


def _references(step: StepSpec) -> list[tuple[str, str]]:
    """The ``(step, output)`` pairs a step's overrides refer to, at any scale."""
    values = [*step.params.values(), *step.tiny.values(), *step.full.values()]
    return [ref for v in values if isinstance(v, str) for ref in REF.findall(v)]


# --- loading ---------------------------------------------------------------------------------

def table_path(root: Path, table: str) -> Path:
    return root / "params" / "tables" / f"{table}.yaml"


def available_tables(root: Path) -> list[str]:
    return sorted(p.stem for p in (root / "params" / "tables").glob("*.yaml"))


def load_table(root: Path, table: str) -> TableSpec:
    path = table_path(root, table)
    if not path.exists():
        have = ", ".join(available_tables(root)) or "none yet"
        raise P.ParamsError(f"{path}: no such table (available: {have})")
    spec = P.validate(TableSpec, P.load_yaml(path), str(path))
    for row in spec.rows:
        for step in row.steps:
            nb = notebook_path(root, spec.paper, step.notebook)
            if not nb.exists():
                raise P.ParamsError(f"{path}: row {row.id!r}, step {step.id!r}: "
                                    f"notebook {nb} does not exist")
    return spec


def load_published(root: Path, table: str) -> Published | None:
    path = root / "results" / "published" / f"{table}.yaml"
    if not path.exists():
        return None
    return P.validate(Published, P.load_yaml(path), str(path))


def notebook_path(root: Path, paper: str, notebook: str) -> Path:
    return notebooks.locate(root, paper, notebook)


# --- running ---------------------------------------------------------------------------------

def _resolve(value: Any, done: dict[str, runs.RunResult]) -> Any:
    if not isinstance(value, str):
        return value
    return REF.sub(lambda m: str(done[m.group(1)].output(m.group(2))), value)


def step_params(root: Path, paper: str, step: StepSpec, scale: str,
                resolve=lambda v: v, seed: int | None = None) -> P.Params:
    """A step's params: its notebook's params file, the table's overrides, and ``seed`` for
    every step that has a ``seed`` parameter (the repeated runs of ``--seeds``)."""
    overrides = {k: resolve(v) for k, v in step.overrides(scale).items()}
    if seed is not None and "seed" in P.schema_for(paper, step.notebook).model_fields:
        overrides["seed"] = seed
    return notebooks.load_params(root, notebook_path(root, paper, step.notebook), scale,
                                 overrides=overrides)


def check_table(root: Path, table: str, scale: str) -> TableSpec:
    """Validate a table and every step's params at ``scale`` without running anything
    (upstream outputs stand in as dummy paths): how full-scale specs are tested here."""
    spec = load_table(root, table)
    for row in spec.rows:
        for step in row.steps:
            step_params(root, spec.paper, step, scale,
                        resolve=lambda v: REF.sub(r"/dry-run/\1/\2", v) if isinstance(v, str)
                        else v)
    return spec


def run_row(root: Path, spec: TableSpec, row: RowSpec, scale: str, *, force: bool = False,
            ran: set[str] | None = None, progress: bool = True, code: str | None = None,
            seed: int | None = None) -> dict[str, runs.RunResult]:
    """Run a row's steps in order. ``ran`` collects the keys executed in this invocation, so
    that ``force`` reruns a step shared by several rows once, not once per row; ``code`` is the
    source version the whole table is keyed on."""
    ran = set() if ran is None else ran
    code = code or runs.code_version(spec.paper)
    done: dict[str, runs.RunResult] = {}
    tag = row.id if seed is None else f"{row.id} seed {seed}"
    for step in row.steps:
        params = step_params(root, spec.paper, step, scale, resolve=lambda v: _resolve(v, done),
                             seed=seed)
        nb = notebook_path(root, spec.paper, step.notebook)
        key = runs.step_key(nb, params, {k: r.record["key"] for k, r in done.items()}, code)
        folder = root / "runs" / scale / spec.paper / step.notebook / key[:16]
        if (not force or key in ran) and runs.is_finished(folder, key):
            done[step.id] = runs.RunResult(folder, runs.read_record(folder))
            tqdm.write(f"[{tag}] {step.id}: reused {folder.relative_to(root)}")
            continue
        tqdm.write(f"[{tag}] {step.id}: running {nb.relative_to(root)} -> "
                   f"{folder.relative_to(root)}")
        done[step.id] = runs.execute(nb, params, folder, key=key, root=root, progress=progress,
                                     extra={"scale": scale})
        ran.add(key)
    return done


def reproduce(table: str, scale: str = "tiny", *, root: Path | None = None, force: bool = False,
              rows: list[str] | None = None, progress: bool = True, seeds: int = 1
              ) -> pd.DataFrame:
    """Run what is missing for ``table`` and write ``results/`` (tiny) or ``results/full/``;
    with ``rows``, only return those rows (a partial table never replaces the published one).
    ``seeds`` > 1 runs every row with seeds 0..n-1 and reports means and standard deviations
    (in ``<table>_<n>seeds.*``)."""
    root = (root or project_root()).resolve()
    if scale not in P.SCALES:
        raise P.ParamsError(f"scale {scale!r}: expected one of {', '.join(P.SCALES)}")
    if seeds < 1:
        raise P.ParamsError(f"seeds must be >= 1, got {seeds}")
    spec = check_table(root, table, scale)
    chosen = [r for r in spec.rows if rows is None or r.id in rows]
    if rows is not None and (missing := set(rows) - {r.id for r in chosen}):
        raise P.ParamsError(f"table {table}: no rows {sorted(missing)}")
    per_seed: list[dict] = []
    ran, code = set(), runs.code_version(spec.paper)
    jobs = [(seed, row) for seed in range(seeds) for row in chosen]
    for seed, row in tqdm(jobs, desc=f"{table} ({scale})", unit="row", disable=not progress):
        if seed == len(per_seed):
            per_seed.append({})
        per_seed[seed][row.id] = run_row(root, spec, row, scale, force=force, ran=ran,
                                         progress=progress, code=code,
                                         seed=seed if seeds > 1 else None)
    frame = assemble(spec, per_seed, load_published(root, table))
    if rows is None:
        write_results(frame, spec, results_name(table, seeds), scale, root, seeds)
    return frame


# --- results ---------------------------------------------------------------------------------

def assemble(spec: TableSpec, per_seed: list[dict[str, dict[str, runs.RunResult]]],
             published: Published | None) -> pd.DataFrame:
    """One record per row: the metrics (their mean over seeds, and ``<metric>_std`` with more
    than one seed) and the published numbers."""
    records = []
    for row in spec.rows:
        if row.id not in per_seed[0]:
            continue
        record: dict[str, Any] = {"row": row.id}
        record.update({c: row.columns.get(c, "") for c in spec.columns})
        for m in spec.metrics:
            values = [_metric(results[row.id], row, m) * spec.metric_scale for results in per_seed]
            record[m] = round(float(np.mean(values)), 2)
            if len(per_seed) > 1:
                record[f"{m}_std"] = round(float(np.std(values, ddof=1)), 2)
        if published is not None:
            for m in spec.metrics:
                if any(m in v for v in published.rows.values()):
                    record[f"{m}_published"] = published.rows.get(row.id, {}).get(m, "")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _metric(results: dict[str, runs.RunResult], row: RowSpec, metric: str) -> float:
    metrics = results[row.metrics_step].metrics
    if metric not in metrics:
        raise KeyError(f"row {row.id!r}: step {row.metrics_step!r} logged no metric "
                       f"{metric!r} (it logged: {', '.join(sorted(metrics)) or 'none'})")
    return float(metrics[metric])


def results_dir(root: Path, scale: str) -> Path:
    return root / "results" if scale == "tiny" else root / "results" / scale


def results_name(table: str, seeds: int = 1) -> str:
    """The file stem of a table's results: one seed keeps the table's name, so the committed
    one-seed table and a repeated-seeds table never overwrite each other."""
    return table if seeds == 1 else f"{table}_{seeds}seeds"


def write_results(frame: pd.DataFrame, spec: TableSpec, table: str, scale: str,
                  root: Path, seeds: int = 1) -> list[Path]:
    out = results_dir(root, scale)
    out.mkdir(parents=True, exist_ok=True)
    csv, md, png = (out / f"{table}.{ext}" for ext in ("csv", "md", "png"))
    frame.to_csv(csv, index=False)
    md.write_text(to_markdown(frame, spec, table, scale, seeds))
    plot_table(frame, spec, png)
    return [csv, md, png]


def to_markdown(frame: pd.DataFrame, spec: TableSpec, table: str, scale: str,
                seeds: int = 1) -> str:
    cols = list(frame.columns)
    lines = [f"# {spec.title}", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    name = table.removesuffix(f"_{seeds}seeds")
    command = f"make reproduce TABLE={name} SCALE={scale}" + (f" SEEDS={seeds}" if seeds > 1 else "")
    spread = (f"; the mean over seeds 0..{seeds - 1}, `*_std` their standard deviation"
              if seeds > 1 else "")
    lines += [f"Regenerate: `{command}` (metrics x{spec.metric_scale:g}{spread}; `*_published` "
              f"columns: the paper's numbers for the matching full-scale row).", ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(_cell(r[c]) for c in cols) + " |")
    if spec.findings:
        lines += ["", "The paper's findings, checked on these numbers:", ""]
        lines += [f"- {line}" for line in check_findings(frame, spec)]
    return "\n".join(lines) + "\n"


def check_findings(frame: pd.DataFrame, spec: TableSpec) -> list[str]:
    """One line per finding: holds or not, with the numbers it rests on."""
    value = {(r["row"], m): r[m] for _, r in frame.iterrows() for m in spec.metrics}
    std = {(r["row"], m): r[f"{m}_std"] for _, r in frame.iterrows() for m in spec.metrics
           if f"{m}_std" in frame.columns}

    def shown(row: str, metric: str) -> str:
        spread = f" ± {_number(std[row, metric])}" if (row, metric) in std else ""
        return f"{row} {_number(value[row, metric])}{spread}"

    out = []
    for f in spec.findings:
        pairs = [(a, b) for a, b in f.pairs if (a, f.metric) in value and (b, f.metric) in value]
        if not pairs:
            continue
        held = [value[a, f.metric] > value[b, f.metric] for a, b in pairs]
        verdict = "holds" if all(held) else f"does not hold ({sum(held)} of {len(held)} pairs)"
        numbers = "; ".join(f"{shown(a, f.metric)} {'>' if h else '<='} {shown(b, f.metric)}"
                            for (a, b), h in zip(pairs, held))
        out.append(f"{f.claim}: **{verdict}** ({f.metric}: {numbers})")
    return out


def _number(value: float) -> str:
    """One decimal for scores like CIDEr x100, more where the metric lives in [-1, 1]."""
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.2f}"
    return str(value)


def plot_table(frame: pd.DataFrame, spec: TableSpec, path: Path) -> None:
    """One panel per metric, a bar per row; published numbers as black ticks where known."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(spec.metrics)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n + 1, 0.45 * len(frame) + 1.5), squeeze=False,
                             sharey=True)
    rows = frame["row"].tolist()
    axes[0][0].invert_yaxis()  # first row on top (the axes share y: invert once)
    for ax, metric in zip(axes[0], spec.metrics):
        ax.barh(rows, frame[metric], color="tab:blue", label="this kit")
        pub = frame.get(f"{metric}_published")
        if pub is not None:
            vals = pd.to_numeric(pub, errors="coerce")
            ys = [i for i, v in enumerate(vals) if pd.notna(v)]
            ax.scatter(vals.dropna(), ys, marker="|", s=300, color="black", label="published")
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    axes[0][-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(spec.title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
