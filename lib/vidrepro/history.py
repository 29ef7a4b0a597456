"""Training curves: the values a loop logs per step, saved as ``history.json`` beside a model
or inside a checkpoint, and written as they come to TensorBoard event files (tensorboardX, so
``tensorboard --logdir`` shows them live). Torch-free, so the JAX paper uses the same type."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FILE = "history.json"


@dataclass
class History:
    """Logged values per step: what the notebooks plot as training curves."""

    step: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)
    board: Any = field(default=None, repr=False, compare=False)

    def log(self, step: int, stats: dict[str, float]) -> None:
        self.step.append(step)
        for k, v in stats.items():
            self.values.setdefault(k, []).append(float(v))
            if self.board is not None:
                self.board.add_scalar(k, float(v), step)

    def log_eval(self, step: int, scores: dict[str, float], prefix: str = "val") -> None:
        """Values measured every so often (validation): ``<prefix>_<name>`` series, their
        steps in ``<prefix>_step``; in TensorBoard as ``<prefix>/<name>``."""
        self.values.setdefault(f"{prefix}_step", []).append(step)
        for k, v in scores.items():
            self.values.setdefault(f"{prefix}_{k}", []).append(float(v))
            if self.board is not None:
                self.board.add_scalar(f"{prefix}/{k}", float(v), step)

    def tensorboard(self, folder: str | Path, start: int = 0) -> History:
        """From now on also write what is logged to TensorBoard event files in ``folder``; a
        run resumed at step ``start`` hides that folder's earlier events from ``start`` on."""
        from tensorboardX import SummaryWriter

        self.board = SummaryWriter(  # the suffix keeps a resume in the same second apart
            str(folder), purge_step=start or None, flush_secs=10, filename_suffix=f".{start}"
        )
        return self

    def close(self) -> None:
        """Flush and close the TensorBoard writer, if any."""
        if self.board is not None:
            self.board.close()
            self.board = None

    def to_json(self, **extra) -> str:
        """``{"steps": [...], "values": {...}}`` plus ``extra`` keys (a checkpoint's step)."""
        return json.dumps({**extra, "steps": self.step, "values": self.values})

    def save(self, folder: str | Path, **extra) -> Path:
        """``folder/history.json``, written whole or not at all; the TensorBoard events so
        far are flushed first, so a checkpoint's curves are on disk with it."""
        if self.board is not None:
            self.board.flush()
        path = Path(folder) / FILE
        tmp = path.with_name(FILE + ".tmp")
        tmp.write_text(self.to_json(**extra))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> History:
        return read(folder)[0]


def read(folder: str | Path) -> tuple[History, dict]:
    """The history saved in ``folder`` and the whole record, with the extra keys it was saved
    with (a checkpoint's step)."""
    meta = json.loads((Path(folder) / FILE).read_text())
    return History(meta["steps"], meta["values"]), meta


def curves(folder: str | Path) -> dict[str, list[float]]:
    """The curves saved beside a model folder; {} where none were (a pretrained model)."""
    return History.load(folder).values if (Path(folder) / FILE).exists() else {}
