"""Checkpoint folders that survive a kill or a full disk mid-save.

Each save goes to its own ``step-<n>`` subfolder and counts only once its ``history.json``, the
file written last, is there; the two newest are kept. A resume reads the newest that loads and
falls back to the one before when a file of it is cut short, saying which file and why.
Torch-free: the torch loop (``training.Checkpoint``) and MERLOT's JAX loop share it.
"""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .history import FILE as HISTORY

KEEP = 2
STEP = re.compile(r"step-(\d+)")
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """No checkpoint of a run can be read; the message names each file and its error."""


def folder_for(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:09d}"


def complete(root: str | Path) -> list[Path]:
    """The finished checkpoints under ``root``, newest first."""
    root = Path(root)
    found = [d for d in root.glob("step-*") if STEP.fullmatch(d.name) and (d / HISTORY).exists()]
    return sorted(found, key=lambda d: int(STEP.fullmatch(d.name)[1]), reverse=True)


def prune(root: str | Path, keep: int = KEEP) -> None:
    """Keep the ``keep`` newest finished checkpoints; drop older ones and unfinished leftovers."""
    kept = complete(root)[:keep]
    for d in Path(root).glob("step-*"):
        if d.is_dir() and d not in kept and (not kept or d.name < kept[0].name):
            shutil.rmtree(d, ignore_errors=True)


def load_newest(root: str | Path, load: Callable[[Path], T]) -> T:
    """``load`` of the newest checkpoint that reads; an unreadable one is named in a warning
    and the one before is tried. Raises :class:`CheckpointError` when none reads."""
    errors = []
    for folder in complete(root):
        try:
            return load(folder)
        except Exception as e:  # noqa: BLE001 - any damaged file: report it, try the older one
            errors.append(f"{folder}: {type(e).__name__}: {e}")
            warnings.warn(f"checkpoint {errors[-1]}; trying the one before", stacklevel=2)
    raise CheckpointError(f"no checkpoint under {root} can be read:\n" + "\n".join(errors))
