"""Training curves: the values a loop logs per step, saved as ``history.json`` beside a model
or inside a checkpoint. Torch-free, so the JAX paper uses the same type."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

FILE = "history.json"


@dataclass
class History:
    """Logged values per step: what the notebooks plot as training curves."""

    step: list[int] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def log(self, step: int, stats: dict[str, float]) -> None:
        self.step.append(step)
        for k, v in stats.items():
            self.values.setdefault(k, []).append(float(v))

    def to_json(self, **extra) -> str:
        """``{"steps": [...], "values": {...}}`` plus ``extra`` keys (a checkpoint's step)."""
        return json.dumps({**extra, "steps": self.step, "values": self.values})

    def save(self, folder: str | Path, **extra) -> Path:
        """``folder/history.json``, written whole or not at all."""
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
