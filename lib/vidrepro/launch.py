"""Run a paper's training stage without a notebook, on a cluster or under ``torchrun``:

    python -m vidrepro.<paper>.train STAGE [--scale tiny|full] [--params FILE] [-p k=v ...] --out DIR
    torchrun --nproc_per_node 8 -m vidrepro.<paper>.train STAGE ...

A stage reads the same params file as its notebook (``params/<paper>/<scale>/<notebook>.yaml``),
so a notebook run and a cluster run of one configuration are the same call, with the same
thread settings (:mod:`vidrepro.determinism`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import determinism
from . import params as P
from .paths import project_root


def parse(
    paper: str, stages: dict[str, str], argv: list[str] | None = None
) -> tuple[str, P.Params, Path]:
    """(stage, validated params, output folder) from the command line; ``stages`` maps a stage
    name to its notebook, whose schema and params file the stage uses."""
    parser = argparse.ArgumentParser(
        prog=f"python -m vidrepro.{paper}.train", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("stage", choices=sorted(stages))
    parser.add_argument("--scale", default="tiny", choices=P.SCALES)
    parser.add_argument("--params", help="a params YAML (default: the notebook's at --scale)")
    parser.add_argument("-p", action="append", metavar="KEY=VALUE", help="override a parameter")
    parser.add_argument("--out", required=True, help="folder for checkpoints and the model")
    args = parser.parse_args(argv)
    notebook = stages[args.stage]
    path = (
        Path(args.params)
        if args.params
        else P.params_path(project_root(), paper, notebook, args.scale)
    )
    try:
        params = P.load(P.schema_for(paper, notebook), path, P.parse_overrides(args.p))
    except (P.ParamsError, FileNotFoundError) as e:
        parser.error(str(e))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    determinism.configure()
    return args.stage, params, out
