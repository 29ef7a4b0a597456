"""Run folders: one per executed notebook, holding what it made and where it came from.

A run folder holds the executed notebook, ``metrics.json`` (metrics, named outputs such as a
checkpoint path, and provenance) and whatever the notebook saves. The notebook side calls
:func:`run_dir`, :func:`log_metrics` and :func:`log_output`; the runner side (:func:`execute`)
points the kernel at the folder through ``$VIDREPRO_RUN_DIR`` and marks the run finished only
after the last cell succeeded, so an interrupted run is never mistaken for a finished one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from . import determinism, live
from .params import Params, canonical_json
from .paths import project_root

RUN_DIR_ENV = "VIDREPRO_RUN_DIR"
METRICS_FILE = "metrics.json"
ITEMS_FILE = "items.csv"
KERNEL_LOG = "kernel.log"  # the kernel's own messages (warnings of C libraries, crashes)
ITEM_ID = "item"
TRACKED_PACKAGES = (
    "vidrepro",
    "torch",
    "torchvision",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "transformers",
    "peft",
    "open_clip_torch",
    "numpy",
    "av",
    "pycocoevalcap",
    "papermill",
)


# --- notebook side ---------------------------------------------------------------------------


def run_dir() -> Path:
    """This run's folder: the runner's, or ``runs/interactive/<time>`` when opened by hand. In
    a kernel the runner started, a notebook that has imported torch also gets its thread count
    and deterministic kernels here, as a command-line stage does."""
    env = os.environ.get(RUN_DIR_ENV)
    if env:
        path = Path(env)
        if "torch" in sys.modules:
            determinism.configure()
    else:
        global _interactive_dir
        if _interactive_dir is None:
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            _interactive_dir = project_root() / "runs" / "interactive" / stamp
        path = _interactive_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


_interactive_dir: Path | None = None


class RecordError(ValueError):
    """A run folder's ``metrics.json`` that is not a record (damaged outside the kit)."""


def read_record(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METRICS_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RecordError(
            f"{path}: not valid JSON ({e.msg}, line {e.lineno}); the run's record is damaged: "
            "delete its folder to run the step again"
        ) from None


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` whole or not at all: a kill mid-write leaves the previous file, and two
    writers never share a temporary file."""
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_record(folder: Path, record: dict[str, Any]) -> None:
    """Atomic: a kill mid-write leaves the previous record, never half a file."""
    write_atomic(
        Path(folder) / METRICS_FILE,
        json.dumps(record, indent=2, sort_keys=True, default=_jsonable),
    )


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy / torch / jax scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def log_metrics(**metrics: Any) -> dict[str, Any]:
    """Record metrics (merged with earlier calls); returns all metrics so far."""
    folder = run_dir()
    record = read_record(folder)
    record.setdefault("metrics", {}).update(metrics)
    write_record(folder, record)
    return record["metrics"]


def log_output(name: str, path: str | Path) -> Path:
    """Name a file or folder this run made, so later steps can ask for it (``${step.name}``)."""
    folder = run_dir()
    path = Path(path).resolve()
    record = read_record(folder)
    try:
        stored = str(path.relative_to(folder.resolve()))
    except ValueError:
        stored = str(path)
    record.setdefault("outputs", {})[name] = stored
    write_record(folder, record)
    return path


def log_stage(stage: Any) -> dict[str, Any]:
    """Log what a paper's ``run_<stage>`` returned (:class:`vidrepro.training.Stage`): each
    output under its name, then the metrics; returns all metrics so far."""
    for name, path in stage.outputs.items():
        log_output(name, path)
    return log_metrics(**stage.metrics)


def log_items(items: Any) -> Path:
    """Per-test-item scores (``items.csv``): one row per item, an ``item`` column with the
    dataset's id (so two rows of a table pair up) and one column per metric whose logged value
    is the mean of that column (an optional ``weight`` column makes it a weighted mean). The
    tables' intervals and verdicts are bootstrapped from these rows."""
    import pandas as pd

    frame = pd.DataFrame(items)
    if ITEM_ID not in frame.columns:
        raise KeyError(f"per-item scores need an {ITEM_ID!r} column (got {list(frame.columns)})")
    if frame[ITEM_ID].duplicated().any():
        dup = frame[ITEM_ID][frame[ITEM_ID].duplicated()].iloc[0]
        raise ValueError(f"per-item scores: item {dup!r} appears twice")
    path = run_dir() / ITEMS_FILE
    write_atomic(path, frame.to_csv(index=False))
    return path


def read_items(folder: Path) -> Any:
    """The ``items.csv`` a run logged (None if it logged none); ids are read as text."""
    import pandas as pd

    path = Path(folder) / ITEMS_FILE
    if not path.exists():
        return None
    return pd.read_csv(path, dtype={ITEM_ID: str})


# --- provenance ------------------------------------------------------------------------------


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


CONSTRAINTS_FILE = "constraints.txt"


def off_constraints(root: Path | None = None) -> dict[str, str]:
    """Packages whose installed version is not the one ``constraints.txt`` pins, as
    ``{name: "installed (pinned)"}``: empty in an environment ``make setup`` made. The committed
    tables repeat exactly only there; elsewhere float rounding may move a beam search."""
    path = (root or project_root()) / CONSTRAINTS_FILE
    if not path.exists():
        return {}
    off = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, sep, pinned = line.partition("==")
        if not sep:
            raise ValueError(f"{path}:{number}: expected name==version, got {line!r}")
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "missing"
        if installed != pinned:
            off[name] = f"{installed} ({pinned})"
    return off


def git_commit(root: Path) -> str:
    """HEAD, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("-dirty" if dirty else "")


# The machinery that runs notebooks and assembles tables, and the Colab installer: editing it
# (a plot, a CLI flag) changes nothing a step computes, so it does not count towards a step's
# code version.
RUNNER_MODULES = frozenset(
    {
        "runs.py",
        "tables.py",
        "cli.py",
        "notebooks.py",
        "stats.py",
        "colab.py",
        "report.py",
        "live.py",
    }
)


def code_version(paper: str | None = None, package: Path | None = None) -> str:
    """Hash of the package source a notebook can run (its modules and the model configs they
    build from): a step is reused only if that is unchanged. (The git commit would also change on a README edit and is absent in a pip
    install.) With ``paper``, the other papers' subpackages are left out: work on MERLOT does
    not retrain BLIP-2."""
    package = package or Path(__file__).resolve().parent
    others = {d.name for d in package.iterdir() if (d / "params.py").exists()} - {paper}
    digest = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *package.rglob("configs/*.json")]):
        relative = path.relative_to(package)
        if (path.parent == package and path.name in RUNNER_MODULES) or (
            paper and relative.parts[0] in others
        ):
            continue
        digest.update(str(relative).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- runner side -----------------------------------------------------------------------------


class StepFailed(RuntimeError):
    """A notebook cell raised; the message holds the error and the executed notebook's path."""


@dataclass
class RunResult:
    folder: Path
    record: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics", {})

    def output(self, name: str) -> Path:
        outputs = self.record.get("outputs", {})
        if name not in outputs:
            raise KeyError(
                f"{self.folder}: the run logged no output {name!r} "
                f"(it has: {', '.join(sorted(outputs)) or 'none'})"
            )
        return self.folder / outputs[name]


def is_finished(folder: Path, key: str | None = None) -> bool:
    record = read_record(folder)
    return record.get("status") == "finished" and (key is None or record.get("key") == key)


def execute(
    notebook: Path,
    params: Params,
    folder: Path,
    *,
    key: str | None = None,
    root: Path | None = None,
    progress: bool = True,
    label: str | None = None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """Run ``notebook`` with papermill into ``folder``; raise :class:`StepFailed` on a cell error.
    With ``progress``, a status line (``label``, default the notebook's name) follows the
    kernel's progress bars (:mod:`vidrepro.live`).

    The record starts as ``running`` and becomes ``finished`` only after the last cell (or
    ``failed``, with the error), so a killed or failed run is rerun, not reused. Earlier contents
    of the folder (an interrupted run's checkpoints) are kept: notebooks resume from them.
    """
    import papermill as pm  # heavy; the notebook side never needs it

    root = (root or project_root()).resolve()
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    values = params.model_dump(mode="json")
    record = {
        "status": "running",
        "key": key,
        "notebook": _relative(notebook, root),
        "params": values,
        "params_hash": params.digest(),
        "provenance": {
            "git_commit": git_commit(root),
            "code_version": code_version(),
            "packages": package_versions(),
            "off_constraints": off_constraints(root),
            "host": platform.node(),
            "platform": platform.platform(),
            "threads": determinism.threads(),
            "cpu": determinism.cpu(),
            "start": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
        **(extra or {}),
    }
    write_record(folder, record)
    executed = folder / Path(notebook).name
    # The kernel's own environment: its run folder and the pinned thread settings.
    kernel_env = {
        # Progress bars sized as in a notebook, not by the terminal the kernel inherits (one
        # of 0x0 hides them).
        "TQDM_NCOLS": "100",
        "TQDM_NROWS": "50",
        **os.environ,
        **determinism.environment(),
        RUN_DIR_ENV: str(folder),
        "VIDREPRO_ROOT": str(root),
    }
    start = time.monotonic()
    status = live.Status(label or Path(notebook).stem) if progress else None
    try:
        with _kernel_manager(kernel_env, folder / KERNEL_LOG) as manager:
            pm.execute_notebook(
                str(notebook),
                str(executed),
                parameters=values,
                kernel_name="python3",
                progress_bar=False,
                cwd=str(root),
                log_output=False,
                stderr_file=status,
                **manager,
            )
    except pm.PapermillExecutionError as e:
        if status is not None:
            status.close("failed")
        error = f"{_relative(notebook, root)} failed in cell {e.exec_count}: {e.ename}: {e.evalue}"
        write_record(folder, {**read_record(folder), "status": "failed", "error": error})
        raise StepFailed(
            f"{error}\nexecuted notebook: {executed}\nkernel messages: {folder / KERNEL_LOG}\n"
            + "".join(_strip_ansi(t) for t in e.traceback[-3:])
        ) from None
    except BaseException:  # a kill, Ctrl-C: the line says so, the record stays "running"
        if status is not None:
            status.close("stopped")
        raise
    if status is not None:
        status.close("finished")
    record = {**read_record(folder), "status": "finished"}
    record["provenance"]["duration_s"] = round(time.monotonic() - start, 2)
    write_record(folder, record)
    return RunResult(folder, record)


@contextmanager
def _kernel_manager(env: dict[str, str], log: Path) -> Iterator[dict[str, Any]]:
    """Papermill's kernel started with ``env`` (never through ``os.environ``, so that steps
    run side by side cannot swap run folders), over Unix sockets in a private temporary folder
    (no open ports, no warning about unencrypted TCP) where there are any (not on Windows),
    drawing text progress bars (:func:`vidrepro.live.text_bars`), its own messages (not the
    cells' output) going to ``log`` rather than the terminal's status lines."""
    from jupyter_client.manager import KernelManager

    with (
        tempfile.TemporaryDirectory(prefix="vidrepro-ipc-") as sockets,
        open(log, "ab") as messages,
    ):

        class _Manager(KernelManager):
            def __init__(self, **kwargs: Any) -> None:
                if os.name != "nt":
                    kwargs.update(transport="ipc", ip=os.path.join(sockets, "kernel"))
                super().__init__(**kwargs)

            def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
                startup = f"--IPKernelApp.exec_lines={live.KERNEL_STARTUP}"
                return [*super().format_kernel_cmd(extra_arguments), startup]

            async def _async_pre_start_kernel(self, **kw: Any) -> Any:
                kw.update(env=dict(env), stdout=messages, stderr=messages)
                return await super()._async_pre_start_kernel(**kw)

        yield {"kernel_manager_class": _Manager}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return str(path)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text) + "\n"


def step_key(notebook: Path, params: Params, upstream: dict[str, str], code: str) -> str:
    """What decides whether a finished step can be reused: notebook text, params (with upstream
    paths already substituted), the upstream steps' own keys, the package source (``code``:
    :func:`code_version`, taken once per table so that edits during a run do not split it) and
    the libraries' versions (another numpy or torch may round differently)."""
    payload = {
        "notebook": file_digest(notebook),
        "params": params.model_dump(mode="json"),
        "upstream": upstream,
        "code": code,
        "packages": {k: v for k, v in package_versions().items() if k != "vidrepro"},
    }
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def default_run_folder(root: Path, notebook: Path) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return root / "runs" / "manual" / f"{Path(notebook).stem}-{stamp}"


__all__ = [
    "run_dir",
    "log_metrics",
    "log_output",
    "execute",
    "RunResult",
    "StepFailed",
    "step_key",
    "is_finished",
    "read_record",
    "log_items",
    "read_items",
    "package_versions",
    "git_commit",
    "code_version",
]
