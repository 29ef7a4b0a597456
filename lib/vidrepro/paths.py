"""Where the kit's folders are.

Notebooks, params and results live beside the package in a checkout (``pip install -e .``), and
papermill runs notebooks with the project root as working directory, so every path the kit writes
is resolved here rather than against whatever directory a user's kernel started in.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding ``notebooks/`` and ``params/``: ``$VIDREPRO_ROOT``, else the first
    parent of the working directory that has both, else the checkout this package lives in."""
    if env := os.environ.get("VIDREPRO_ROOT"):
        return Path(env).resolve()
    for d in (Path.cwd(), *Path.cwd().parents):
        if (d / "params").is_dir() and (d / "notebooks").is_dir():
            return d
    here = Path(__file__).resolve().parents[2]  # lib/vidrepro/paths.py -> checkout
    if (here / "params").is_dir():
        return here
    raise FileNotFoundError(
        "cannot find the vidrepro checkout (a folder with notebooks/ and params/): "
        "run from inside it or set VIDREPRO_ROOT"
    )


def data_path(given: str | Path) -> Path:
    """A path from a params file: absolute as it is, else relative to ``data_root()``."""
    path = Path(given)
    return path if path.is_absolute() else data_root() / path


def data_root() -> Path:
    """Datasets: ``$VIDREPRO_DATA`` (full-scale users point it at their disks), else ``data/``."""
    if env := os.environ.get("VIDREPRO_DATA"):
        return Path(env).resolve()
    return project_root() / "data"
