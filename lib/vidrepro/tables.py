"""Result tables: a table spec is rows of notebook chains; running them fills ``results/``.

``params/tables/<table>.yaml`` lists rows; each row is a chain of notebook steps with parameter
overrides, where a later step may use an earlier step's output as ``${<step id>.<output name>}``
(e.g. a checkpoint). Steps live in content-addressed folders
``runs/<scale>/<paper>/<notebook>/<key>/`` rather than per table row: the same step (say, the
pretraining every row starts from) is run once and shared by every row and table that asks for
it with the same inputs, and rerunning an unchanged table only reads the finished records.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from . import determinism, notebooks, runs, stats
from . import params as P
from .paths import data_path, data_root, project_root

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
    metrics_from: str | None = Field(
        None, description="step whose metrics fill the row (default: the last)"
    )

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
                    raise ValueError(
                        f"row {self.id!r}, step {step.id!r}: ${{{ref_step}...}} "
                        f"names no earlier step (earlier: {ids[:i]})"
                    )
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
    by_construction: str = Field(
        "",
        description="why the outcome follows from how the rows "
        "are built (then not counted as reproduced)",
    )
    not_testable: dict[Literal["tiny", "full"], str] = Field(
        {},
        description="per scale, why the rows cannot test the claim there (the difference "
        "is still reported, the verdict is 'not testable')",
    )


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
                raise ValueError(
                    f"row {row.id!r}: columns {sorted(extra)} are not in the "
                    f"table's columns {self.columns}"
                )
        for f in self.findings:
            unknown = {r for pair in f.pairs for r in pair} - set(ids)
            if unknown or f.metric not in self.metrics:
                raise ValueError(
                    f"finding {f.claim!r}: unknown rows {sorted(unknown)} or metric {f.metric!r}"
                )
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
                raise P.ParamsError(
                    f"{path}: row {row.id!r}, step {step.id!r}: notebook {nb} does not exist"
                )
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


def step_params(
    root: Path, paper: str, step: StepSpec, scale: str, resolve=lambda v: v, seed: int | None = None
) -> P.Params:
    """A step's params: its notebook's params file, the table's overrides, and ``seed`` for
    every step that has a ``seed`` parameter (the repeated runs of ``--seeds``)."""
    overrides = {k: resolve(v) for k, v in step.overrides(scale).items()}
    if seed is not None and "seed" in P.schema_for(paper, step.notebook).model_fields:
        overrides["seed"] = seed
    return notebooks.load_params(
        root, notebook_path(root, paper, step.notebook), scale, overrides=overrides
    )


def check_table(root: Path, table: str, scale: str) -> TableSpec:
    """Validate a table and every step's params at ``scale`` without running anything
    (upstream outputs stand in as dummy paths): how full-scale specs are tested here."""
    spec = load_table(root, table)
    for row in spec.rows:
        for step in row.steps:
            step_params(root, spec.paper, step, scale, resolve=_dry_run)
    return spec


def _dry_run(value: Any) -> Any:
    """An upstream output reference as a dummy path, for checking params without running."""
    return REF.sub(r"/dry-run/\1/\2", value) if isinstance(value, str) else value


def _located(
    root: Path,
    spec: TableSpec,
    step: StepSpec,
    scale: str,
    done: dict[str, runs.RunResult],
    code: str,
    seed: int | None,
    workdir: Path,
) -> tuple[Path, P.Params, str, Path]:
    """Where a step of a row lives: (notebook, params, key, folder), given the row's earlier
    steps in ``done``."""
    params = step_params(
        root, spec.paper, step, scale, resolve=lambda v: _resolve(v, done), seed=seed
    )
    nb = notebook_path(root, spec.paper, step.notebook)
    key = runs.step_key(nb, params, {k: r.record["key"] for k, r in done.items()}, code)
    return nb, params, key, workdir / "runs" / scale / spec.paper / step.notebook / key[:16]


BOARD = "tensorboard"  # runs/tensorboard/<scale>/<table>/<row>/<step>: links to step folders
DATA_KEYS = ("_root", "_path")  # params naming a dataset folder or file under $VIDREPRO_DATA


def data_inputs(root: Path, table: str, scale: str) -> dict[str, tuple[str, Path]]:
    """The datasets a table reads at ``scale``: ``{"<row>/<step>: <key>": (value, path)}`` for
    every non-empty params value whose key ends in ``_root`` or ``_path`` (empty: synthetic data,
    generated on first use)."""
    spec = load_table(root, table)
    found = {}
    for row in spec.rows:
        for step in row.steps:
            params = step_params(root, spec.paper, step, scale, resolve=_dry_run)
            for key, value in params.model_dump().items():
                if key.endswith(DATA_KEYS) and isinstance(value, str) and value:
                    found[f"{row.id}/{step.id}: {key}"] = (value, data_path(value))
    return found


def check_data(root: Path, table: str, scale: str) -> None:
    """Raise, before any kernel starts, if a dataset the table reads is missing: name each
    params key, where it was looked for and ``$VIDREPRO_DATA``."""
    missing = {}
    for where, (value, path) in data_inputs(root, table, scale).items():
        if not path.exists():
            missing.setdefault(str(path), []).append(f"{where} = {value!r}")
    if missing:
        lines = [
            f"  {path} (from {', '.join(uses[:2])}{', ...' if len(uses) > 2 else ''})"
            for path, uses in missing.items()
        ]
        raise P.ParamsError(
            f"table {table} at {scale} scale reads data that is not there:\n"
            + "\n".join(lines)
            + f"\nRelative paths are under $VIDREPRO_DATA (now {data_root()}); set it to the "
            "folder holding the datasets. The README's Data section gives each dataset's "
            "layout and where to download it."
        )


class StepLocks:
    """One lock per step key, for rows run side by side: of two rows that share a step, one
    runs it and the other waits, then reuses it."""

    def __init__(self):
        self._guard, self._locks = threading.Lock(), {}

    def __call__(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())


def run_row(
    root: Path,
    spec: TableSpec,
    row: RowSpec,
    scale: str,
    *,
    force: bool = False,
    ran: set[str] | None = None,
    progress: bool = True,
    code: str | None = None,
    seed: int | None = None,
    workdir: Path | None = None,
    locks: StepLocks | None = None,
    board: Path | None = None,
) -> dict[str, runs.RunResult]:
    """Run a row's steps in order. ``ran`` collects the keys executed in this invocation, so
    that ``force`` reruns a step shared by several rows once, not once per row; ``code`` is the
    source version the whole table is keyed on; step folders live under ``workdir/runs``
    (default: the project's); ``locks`` is shared by rows running at the same time; under
    ``board``, ``<row>[/seed<s>]/<step>`` links to each step's folder (:func:`link_step`)."""
    ran = set() if ran is None else ran
    workdir = workdir or root
    code = code or runs.code_version(spec.paper)
    locks = locks or StepLocks()
    done: dict[str, runs.RunResult] = {}
    tag = row.id if seed is None else f"{row.id} seed {seed}"
    for step in row.steps:
        nb, params, key, folder = _located(root, spec, step, scale, done, code, seed, workdir)
        if board is not None:
            link_step(board / row.id / ("" if seed is None else f"seed{seed}") / step.id, folder)
        with locks(key), step_lock(folder, lambda text: tqdm.write(f"[{tag}] {step.id}: {text}")):
            if force and key not in ran and folder.exists():
                _discard(folder)
            if (not force or key in ran) and runs.is_finished(folder, key):
                done[step.id] = runs.RunResult(folder, runs.read_record(folder))
                tqdm.write(f"[{tag}] {step.id}: reused {_shown(folder, root)}")
                continue
            tqdm.write(
                f"[{tag}] {step.id}: running {nb.relative_to(root)} -> {_shown(folder, root)}"
            )
            done[step.id] = runs.execute(
                nb,
                params,
                folder,
                key=key,
                root=root,
                progress=progress,
                label=f"[{tag}] {step.id}",
                extra={"scale": scale},
            )
            ran.add(key)
    return done


@contextmanager
def step_lock(folder: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One process at a time in a step folder: a second ``reproduce`` of the same step (another
    terminal, another job on a shared disk) says who holds it, waits, then reuses what the first
    made instead of training into the same folder."""
    from filelock import FileLock, Timeout

    folder.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder.parent / f".{folder.name}.lock")
    owner = folder.parent / f".{folder.name}.owner"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = owner.read_text().strip() if owner.exists() else "another process"
        say(f"waiting for {holder}, which is running this step")
        lock.acquire()
    try:
        stamp = dt.datetime.now().isoformat(timespec="seconds")
        runs.write_atomic(owner, f"pid {os.getpid()} on {platform.node()} (since {stamp})")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def link_step(link: Path, folder: Path) -> None:
    """Point ``link`` at a step folder (named by its key): TensorBoard follows it, so
    ``tensorboard --logdir runs/tensorboard`` names every training curve by table, row and step.
    Where the system makes no symbolic links the step folders alone remain."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.symlink_to(os.path.relpath(folder, link.parent), target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)


def _discard(folder: Path) -> None:
    """Move a step folder aside, then delete it: a forced rerun starts from nothing, not from
    the checkpoints of the last run (which would resume at their final step and train nothing)."""
    aside = folder.with_name(f"{folder.name}.discarded-{os.getpid()}")
    folder.rename(aside)
    shutil.rmtree(aside)


def _interleaved(
    root: Path,
    spec: TableSpec,
    rows: list[RowSpec],
    scale: str,
    code: str,
    seeds: int,
    workdir: Path,
) -> list[tuple[int, RowSpec]]:
    """(seed, row) in the order to start them: rows grouped by their first step (which has no
    upstream, so its key is known now), taken from the groups in turn, so that side-by-side
    workers begin with different first steps (several pretrainings at once) instead of
    waiting on one shared step."""
    groups: dict[str, list[tuple[int, RowSpec]]] = {}
    for seed in range(seeds):
        for row in rows:
            *_, key, _ = _located(
                root, spec, row.steps[0], scale, {}, code, seed if seeds > 1 else None, workdir
            )
            groups.setdefault(key, []).append((seed, row))
    queues = list(groups.values())
    order = []
    while any(queues):
        order += [q.pop(0) for q in queues if q]
    return order


def default_jobs(scale: str) -> int:
    """Rows run side by side: at tiny scale one per ``determinism.threads()`` cores (each
    kernel pins its threads, so results do not depend on it); at full scale one (a GPU)."""
    if scale != "tiny":
        return 1
    return max(1, min(4, (os.cpu_count() or 1) // determinism.threads()))


def step_status(
    table: str, scale: str = "tiny", *, root: Path | None = None, seeds: int = 1
) -> pd.DataFrame:
    """Every step of every row without running anything: its status (finished, running,
    failed, not run, or waiting for an earlier step), its folder, the outputs it logged (e.g.
    the model a "your video" notebook takes) and its metrics."""
    root = (root or project_root()).resolve()
    spec = check_table(root, table, scale)
    code = runs.code_version(spec.paper)
    records = []
    for seed in range(seeds):
        for row in spec.rows:
            done: dict[str, runs.RunResult] = {}
            for i, step in enumerate(row.steps):
                entry = {"row": row.id, "seed": seed, "step": step.id, "notebook": step.notebook}
                if len(done) < i:  # an earlier step is not finished
                    records.append(
                        {**entry, "status": "waiting", "folder": "", "outputs": "", "metrics": {}}
                    )
                    continue
                *_, key, folder = _located(
                    root, spec, step, scale, done, code, seed if seeds > 1 else None, root
                )
                record = runs.read_record(folder)
                status = record.get("status", "not run") if record.get("key") == key else "not run"
                if status == "finished":
                    done[step.id] = runs.RunResult(folder, record)
                outputs = ", ".join(
                    f"{k}: {_shown(folder / v, root)}" for k, v in record.get("outputs", {}).items()
                )
                finished = status == "finished"
                records.append(
                    {
                        **entry,
                        "status": status,
                        "folder": str(_shown(folder, root)),
                        "outputs": outputs if finished else "",
                        "metrics": record.get("metrics", {}) if finished else {},
                    }
                )
    return pd.DataFrame.from_records(records)


def _shown(path: Path, root: Path) -> Path:
    return path.relative_to(root) if path.is_relative_to(root) else path


def reproduce(
    table: str,
    scale: str = "tiny",
    *,
    root: Path | None = None,
    force: bool = False,
    rows: list[str] | None = None,
    progress: bool = True,
    seeds: int = 1,
    workdir: Path | None = None,
    jobs: int | None = None,
) -> pd.DataFrame:
    """Run what is missing for ``table`` and write ``results/`` (tiny) or ``results/full/``;
    with ``rows``, only return those rows (a partial table never replaces the published one).
    ``seeds`` > 1 runs every row with seeds 0..n-1 and reports means and standard deviations
    (in ``<table>_<n>seeds.*``). With ``workdir``, steps run in ``workdir/runs`` and nothing is
    written to ``results/``. ``jobs`` rows run side by side (default :func:`default_jobs`);
    the numbers do not depend on it."""
    root = (root or project_root()).resolve()
    if scale not in P.SCALES:
        raise P.ParamsError(f"scale {scale!r}: expected one of {', '.join(P.SCALES)}")
    if seeds < 1:
        raise P.ParamsError(f"seeds must be >= 1, got {seeds}")
    spec = check_table(root, table, scale)
    check_data(root, table, scale)
    chosen = [r for r in spec.rows if rows is None or r.id in rows]
    if rows is not None and (missing := set(rows) - {r.id for r in chosen}):
        raise P.ParamsError(
            f"table {table}: no rows {sorted(missing)} (rows: {', '.join(r.id for r in spec.rows)})"
        )
    per_seed: list[dict] = [{} for _ in range(seeds)]
    ran, code, locks = set(), runs.code_version(spec.paper), StepLocks()
    todo = _interleaved(root, spec, chosen, scale, code, seeds, workdir or root)
    bar = tqdm(total=len(todo), desc=f"{table} ({scale})", unit="row", disable=not progress)
    with ThreadPoolExecutor(jobs or default_jobs(scale)) as pool:
        running = {
            pool.submit(
                run_row,
                root,
                spec,
                row,
                scale,
                force=force,
                ran=ran,
                progress=progress,
                code=code,
                seed=seed if seeds > 1 else None,
                workdir=workdir,
                locks=locks,
                board=(workdir or root) / "runs" / BOARD / scale / results_name(table, seeds),
            ): (seed, row)
            for seed, row in todo
        }
        try:
            for future in as_completed(running):
                seed, row = running[future]
                per_seed[seed][row.id] = future.result()
                bar.update()
        except BaseException:
            pool.shutdown(cancel_futures=True)  # the rows already running finish first
            raise
    bar.close()
    items = {row.id: row_items(per_seed, row) for row in chosen}
    frame = assemble(spec, per_seed, load_published(root, table), items)
    if rows is None and workdir is None:
        write_results(
            frame,
            findings(spec, items, scale),
            spec,
            results_name(table, seeds),
            scale,
            root,
            seeds,
        )
    return frame


def verify(
    table: str,
    scale: str = "tiny",
    *,
    root: Path | None = None,
    seeds: int = 1,
    progress: bool = True,
) -> tuple[pd.DataFrame, Path]:
    """Rerun ``table`` from nothing in a scratch folder (``runs/verify/``: every step executed
    anew, the synthetic data generated anew) and compare each number with the committed CSV.
    Returns one record per row and column (committed value, rerun value, ``same``) and the
    scratch folder."""
    root = (root or project_root()).resolve()
    committed_csv = results_dir(root, scale) / f"{results_name(table, seeds)}.csv"
    if not committed_csv.exists():
        raise P.ParamsError(
            f"{committed_csv}: nothing to verify against (run `vidrepro reproduce {table}` first)"
        )
    committed = pd.read_csv(committed_csv, dtype={"row": str})
    (root / "runs" / "verify").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{table}-", dir=root / "runs" / "verify"))
    before = os.environ.get("VIDREPRO_DATA")
    os.environ["VIDREPRO_DATA"] = str(scratch / "data")  # the kernels generate data here
    try:
        rerun = reproduce(table, scale, root=root, seeds=seeds, progress=progress, workdir=scratch)
    finally:
        if before is None:
            os.environ.pop("VIDREPRO_DATA", None)
        else:
            os.environ["VIDREPRO_DATA"] = before
    rerun.to_csv(scratch / committed_csv.name, index=False)
    rerun = pd.read_csv(scratch / committed_csv.name, dtype={"row": str})
    return compare(committed, rerun), scratch


def committed_machine(root: Path, table: str, scale: str, seeds: int = 1) -> dict[str, Any]:
    """The :func:`machine` a committed table was written on ({} when not recorded)."""
    path = results_dir(root, scale) / f"{results_name(table, seeds)}_env.json"
    return json.loads(path.read_text()) if path.exists() else {}


def compare(committed: pd.DataFrame, rerun: pd.DataFrame) -> pd.DataFrame:
    """Cell by cell: ``same`` when both are equal or both empty (a row or column only one side
    has is a difference)."""
    records = []
    old, new = committed.set_index("row"), rerun.set_index("row")
    for row in dict.fromkeys([*old.index, *new.index]):
        for col in dict.fromkeys([*old.columns, *new.columns]):
            a = old.at[row, col] if row in old.index and col in old.columns else "(missing)"
            b = new.at[row, col] if row in new.index and col in new.columns else "(missing)"
            empty = not isinstance(a, str) and not isinstance(b, str) and pd.isna(a) and pd.isna(b)
            records.append(
                {
                    "row": row,
                    "column": col,
                    "committed": a,
                    "rerun": b,
                    "same": bool(empty or a == b),
                }
            )
    return pd.DataFrame.from_records(records)


# --- results ---------------------------------------------------------------------------------


def assemble(
    spec: TableSpec,
    per_seed: list[dict[str, dict[str, runs.RunResult]]],
    published: Published | None,
    items: dict[str, list[pd.DataFrame] | None],
) -> pd.DataFrame:
    """One record per row: each metric's mean over seeds; with per-item scores its 95% interval
    (``<metric>_lo``, ``<metric>_hi``, see :mod:`vidrepro.stats`); with several seeds the
    per-seed values (``<metric>_seed<k>``) and their standard deviation (``<metric>_std``);
    and the published numbers."""
    records = []
    for row in spec.rows:
        if row.id not in per_seed[0]:
            continue
        record: dict[str, Any] = {"row": row.id}
        record.update({c: row.columns.get(c, "") for c in spec.columns})
        scored = items[row.id]
        for m in spec.metrics:
            values = [_metric(results[row.id], row, m) * spec.metric_scale for results in per_seed]
            record[m] = _round(np.mean(values))
            if scored is not None and m in scored[0].columns:
                _check_items(scored, values, spec.metric_scale, row, m)
                interval = stats.row_interval(scored, m).scaled(spec.metric_scale)
                record[f"{m}_lo"], record[f"{m}_hi"] = _round(interval.lo), _round(interval.hi)
            if len(per_seed) > 1:
                record[f"{m}_std"] = _round(np.std(values, ddof=1))
                record.update({f"{m}_seed{k}": _round(v) for k, v in enumerate(values)})
        if published is not None:
            for m in spec.metrics:
                if any(m in v for v in published.rows.values()):
                    record[f"{m}_published"] = published.rows.get(row.id, {}).get(m, "")
        records.append(record)
    return pd.DataFrame.from_records(records)


def _round(value: float) -> float:
    """Four decimals in the CSV (the markdown shows fewer): enough to compare reruns exactly."""
    return round(float(value), 4)


def row_items(
    per_seed: list[dict[str, dict[str, runs.RunResult]]], row: RowSpec
) -> list[pd.DataFrame] | None:
    """The per-item scores of a row's metrics step, one frame per seed (None if not logged)."""
    frames = [runs.read_items(results[row.id][row.metrics_step].folder) for results in per_seed]
    return None if any(f is None for f in frames) else frames


def _check_items(
    items: list[pd.DataFrame], values: list[float], scale: float, row: RowSpec, metric: str
) -> None:
    """Intervals are only honest if the logged metric is the mean of the items' column."""
    for k, (frame, value) in enumerate(zip(items, values)):
        w = frame["weight"] if "weight" in frame.columns else pd.Series(1.0, index=frame.index)
        mean = float((frame[metric] * w).sum() / w.sum()) * scale
        if not np.isclose(mean, value, rtol=1e-6, atol=1e-6 * scale):
            raise ValueError(
                f"row {row.id!r}, seed {k}: {metric} is {value / scale:.6g} but "
                f"its per-item scores average {mean / scale:.6g} "
                f"({runs.ITEMS_FILE} of step {row.metrics_step!r})"
            )


def _metric(results: dict[str, runs.RunResult], row: RowSpec, metric: str) -> float:
    metrics = results[row.metrics_step].metrics
    if metric not in metrics:
        raise KeyError(
            f"row {row.id!r}: step {row.metrics_step!r} logged no metric "
            f"{metric!r} (it logged: {', '.join(sorted(metrics)) or 'none'})"
        )
    return float(metrics[metric])


def findings(
    spec: TableSpec, items: dict[str, list[pd.DataFrame] | None], scale: str = "tiny"
) -> pd.DataFrame:
    """One record per finding pair: the difference A - B of the metric (scaled as the table),
    its paired-bootstrap 95% interval and verdict, and the finding's verdict (holds if every
    pair holds, reversed if any pair is reversed, else unresolved; or by construction, or not
    testable at this scale)."""
    records = []
    for f in spec.findings:
        pairs = [(a, b) for a, b in f.pairs if a in items and b in items]
        found = []
        for a, b in pairs:
            ia, ib = items[a], items[b]
            if ia is None or ib is None or f.metric not in ia[0].columns:
                raise ValueError(
                    f"finding {f.claim!r}: rows {a!r} and {b!r} need per-item "
                    f"{f.metric!r} scores ({runs.ITEMS_FILE}) for an interval"
                )
            diff = stats.paired_difference(ia, ib, f.metric).scaled(spec.metric_scale)
            found.append(
                {
                    "claim": f.claim,
                    "metric": f.metric,
                    "a": a,
                    "b": b,
                    "difference": _round(diff.mean),
                    "lo": _round(diff.lo),
                    "hi": _round(diff.hi),
                    "pair_verdict": stats.verdict(diff),
                }
            )
        verdicts = {r["pair_verdict"] for r in found}
        untestable = f.not_testable.get(scale, "")
        overall = (
            stats.NOT_TESTABLE
            if untestable
            else stats.BY_CONSTRUCTION
            if f.by_construction
            else stats.HOLDS
            if verdicts == {stats.HOLDS}
            else stats.REVERSED
            if stats.REVERSED in verdicts
            else stats.UNRESOLVED
        )
        for r in found:
            records.append({**r, "verdict": overall, "reason": untestable or f.by_construction})
    return pd.DataFrame.from_records(
        records,
        columns=[
            "claim",
            "metric",
            "a",
            "b",
            "difference",
            "lo",
            "hi",
            "pair_verdict",
            "verdict",
            "reason",
        ],
    )


def results_dir(root: Path, scale: str) -> Path:
    return root / "results" if scale == "tiny" else root / "results" / scale


def results_name(table: str, seeds: int = 1) -> str:
    """The file stem of a table's results: one seed keeps the table's name, so the committed
    one-seed table and a repeated-seeds table never overwrite each other."""
    return table if seeds == 1 else f"{table}_{seeds}seeds"


def write_results(
    frame: pd.DataFrame,
    found: pd.DataFrame,
    spec: TableSpec,
    table: str,
    scale: str,
    root: Path,
    seeds: int = 1,
) -> list[Path]:
    """``<table>.csv`` (rows), ``<table>_findings.csv``, ``<table>.md``, ``<table>.png`` and
    ``<table>_env.json`` (:func:`machine`)."""
    out = results_dir(root, scale)
    out.mkdir(parents=True, exist_ok=True)
    csv, md, png = (out / f"{table}.{ext}" for ext in ("csv", "md", "png"))
    found_csv, env = out / f"{table}_findings.csv", out / f"{table}_env.json"
    frame.to_csv(csv, index=False)
    found.to_csv(found_csv, index=False)
    env.write_text(json.dumps(machine(), indent=2) + "\n")
    md.write_text(to_markdown(frame, found, spec, table, scale, seeds))
    plot_table(frame, spec, png, scale, seeds)
    return [csv, found_csv, md, png, env]


def machine() -> dict[str, Any]:
    """What the numbers of a table written here depend on besides code, params and seeds: the
    processor's instruction set, the threads per kernel and the libraries' versions."""
    return {
        "cpu": determinism.cpu(),
        "threads": determinism.threads(),
        "packages": runs.package_versions(),
    }


def to_markdown(
    frame: pd.DataFrame,
    found: pd.DataFrame,
    spec: TableSpec,
    table: str,
    scale: str,
    seeds: int = 1,
) -> str:
    metric_cols = [m for m in spec.metrics if m in frame.columns]
    other = [c for c in frame.columns if c in ("row", *spec.columns)]
    published = [c for c in frame.columns if c.endswith("_published")]
    lines = [f"# {spec.title}", ""]
    if spec.description:
        lines += [spec.description.strip(), ""]
    name = table.removesuffix(f"_{seeds}seeds")
    command = f"make reproduce TABLE={name} SCALE={scale}" + (
        f" SEEDS={seeds}" if seeds > 1 else ""
    )
    over = f"seeds 0..{seeds - 1}" if seeds > 1 else "seed 0"
    lines += [
        f"Regenerate: `{command}`. Metrics x{spec.metric_scale:g}, {scale} scale, {over}: "
        f"mean ± half-width of the 95% bootstrap interval over test items"
        + (" and seeds" if seeds > 1 else "")
        + " (where per-item scores exist). "
        "`*_published` columns: the paper's numbers for the matching full-scale row, on "
        "another dataset: not comparable with the tiny scores. "
        f"Written on {determinism.cpu()}, {determinism.threads()} thread(s) per kernel "
        f"(`{table}_env.json`): another instruction set rounds differently.",
        "",
    ]
    cols = other + metric_cols + published
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for _, r in frame.iterrows():
        cells = [_cell(r[c]) for c in other]
        cells += [_with_interval(r, m) for m in metric_cols]
        cells += [_cell(r[c]) for c in published]
        lines.append("| " + " | ".join(cells) + " |")
    if seeds > 1:
        lines += ["", "Per seed:", ""]
        seed_cols = [f"{m}_seed{k}" for m in metric_cols for k in range(seeds)]
        lines.append("| row | " + " | ".join(seed_cols) + " |")
        lines.append("|" + "|".join("---" for _ in range(len(seed_cols) + 1)) + "|")
        for _, r in frame.iterrows():
            lines.append(f"| {r['row']} | " + " | ".join(_cell(r[c]) for c in seed_cols) + " |")
    if len(found):
        lines += [
            "",
            "The paper's findings, checked on these numbers (difference A - B with "
            "its paired 95% interval; holds: above 0, reversed: below 0, unresolved: "
            "contains 0):",
            "",
        ]
        lines += [f"- {line}" for line in finding_lines(found)]
    return "\n".join(lines) + "\n"


def finding_lines(found: pd.DataFrame) -> list[str]:
    """One line per finding, e.g. ``SCST beats ...: **unresolved** (qformer_8f_scst -
    qformer_8f: +0.8 CIDEr, 95% CI -3.1 to +4.6, unresolved)``."""
    out = []
    for claim, group in found.groupby("claim", sort=False):
        first = group.iloc[0]
        verdict = first["verdict"]
        if verdict in (stats.BY_CONSTRUCTION, stats.NOT_TESTABLE):
            verdict = f"{verdict}: {first['reason']}"
        pairs = "; ".join(_pair_text(r, len(group) > 1) for _, r in group.iterrows())
        out.append(f"{claim}: **{verdict}** ({pairs})")
    return out


def _pair_text(r: pd.Series, with_verdict: bool) -> str:
    d = _digits(max(abs(r["difference"]), abs(r["lo"]), abs(r["hi"])))
    return (
        f"{r['a']} - {r['b']}: {r['difference']:+.{d}f} {r['metric']}, "
        f"95% CI {r['lo']:+.{d}f} to {r['hi']:+.{d}f}"
        + (f", {r['pair_verdict']}" if with_verdict else "")
    )


def _digits(value: float) -> int:
    """One decimal for scores like CIDEr x100, more where the metric lives in [-1, 1]."""
    return 1 if abs(value) >= 10 else 2


def _with_interval(r: pd.Series, metric: str) -> str:
    value = r[metric]
    if f"{metric}_lo" in r and pd.notna(r.get(f"{metric}_lo")):
        half = (r[f"{metric}_hi"] - r[f"{metric}_lo"]) / 2
        return f"{value:.{_digits(value)}f} ± {half:.{_digits(value)}f}"
    return _cell(value)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.2f}"
    return str(value)


def plot_table(
    frame: pd.DataFrame, spec: TableSpec, path: Path, scale: str = "tiny", seeds: int = 1
) -> None:
    """One panel per metric, a bar per row with its 95% interval; the published numbers, from
    another dataset, in a panel of their own beside each metric so they share no axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for m in spec.metrics:
        panels.append((m, False))
        pub = frame.get(f"{m}_published")
        if pub is not None and pd.to_numeric(pub, errors="coerce").notna().any():
            panels.append((m, True))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.9 * len(panels) + 1.2, 0.42 * len(frame) + 1.8),
        squeeze=False,
        sharey=True,
    )
    rows = frame["row"].tolist()
    ys = np.arange(len(rows))
    for ax, (metric, is_published) in zip(axes[0], panels):
        if is_published:
            vals = pd.to_numeric(frame[f"{metric}_published"], errors="coerce")
            ax.scatter(
                vals,
                ys,
                marker="D",
                s=28,
                color="0.35",
                label="published (full scale, another dataset)",
            )
            ax.set_title(f"{metric}: published", fontsize=9, color="0.35")
        else:
            err = None
            if f"{metric}_lo" in frame.columns:
                err = np.abs(
                    np.stack(
                        [
                            frame[metric] - frame[f"{metric}_lo"],
                            frame[f"{metric}_hi"] - frame[metric],
                        ]
                    ).astype(float)
                )
            ax.barh(
                ys,
                frame[metric],
                xerr=err,
                color="tab:blue",
                ecolor="black",
                capsize=3,
                label=f"this kit ({scale}), 95% interval",
            )
            ax.set_title(metric, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(ys, rows)
    axes[0][0].invert_yaxis()  # first row on top (the axes share y: invert once)
    handles = {}
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    fig.legend(
        handles.values(),
        handles.keys(),
        loc="lower center",
        ncol=len(handles),
        fontsize=7,
        frameon=False,
    )
    over = f"seeds 0-{seeds - 1}" if seeds > 1 else "seed 0"
    fig.suptitle(
        f"{spec.title}\n{scale} scale, {over}, metrics x{spec.metric_scale:g}", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=150)
    plt.close(fig)
