"""``vidrepro`` command line: what the Makefile and cluster users call.

vidrepro run NOTEBOOK [--params FILE] [--scale tiny] [-p key=value ...] [--out DIR]
vidrepro reproduce TABLE [--scale tiny|full] [--force] [--rows a,b] [--seeds N] [--verify]
vidrepro data synth [--kind KIND|all] [--out DIR] [--seed N] [--size tiny|small]
vidrepro params NOTEBOOK [--scale tiny|full]   a notebook's parameters
vidrepro runs TABLE [--scale tiny|full] [--seeds N]   each step's status and folder
vidrepro check [--env [--scale full|tiny]]   validate every table and params file at both
                          scales; --env: Java, devices and the datasets a scale reads
vidrepro tables           list the tables
vidrepro caption VIDEO --model DIR             BLIP-2: caption your video
vidrepro states VIDEO --model DIR [--category C]   object states: find the change in your video

Paths you type are relative to the current directory.
"""

from __future__ import annotations

import argparse
import sys
import typing
from importlib import metadata
from pathlib import Path

from . import notebooks, runs, tables
from . import params as P
from .data.synthetic import datasets
from .paths import data_root, project_root


def cmd_run(args: argparse.Namespace) -> int:
    root = project_root()
    notebook = _notebook(args.notebook)
    params_file = Path(args.params) if args.params else None
    params = notebooks.load_params(
        root, notebook, args.scale, params_file, P.parse_overrides(args.p)
    )
    folder = Path(args.out) if args.out else runs.default_run_folder(root, notebook)
    result = runs.execute(
        notebook, params, folder, root=root, extra={"params_file": str(params_file or args.scale)}
    )
    width = max((len(k) for k in result.metrics), default=0)
    for name, value in result.metrics.items():
        print(f"{name:{width}s}  {value}")
    print(f"run folder: {result.folder}")
    return 0


def _notebook(text: str) -> Path:
    notebook = Path(text)
    if notebook.suffix != ".ipynb" or not notebook.exists():
        raise P.ParamsError(f"{notebook}: no such notebook (.ipynb)")
    return notebook


def cmd_params(args: argparse.Namespace) -> int:
    """Each parameter: name, type, the value at ``--scale`` (its params file), the notebook's
    default and the help text."""
    notebook = _notebook(args.notebook)
    paper, name = notebooks.identify(notebook)
    schema = P.schema_for(paper, name)
    values = notebooks.load_params(project_root(), notebook, args.scale).model_dump(mode="json")
    print(
        f"{paper}/{name} at {args.scale} scale "
        f"(params/{paper}/{args.scale}/{name}.yaml; -p KEY=VALUE overrides):"
    )
    rows = [
        (
            k,
            _type_name(f.annotation),
            repr(values[k]),
            "required" if f.is_required() else repr(f.default),
            f.description or "",
        )
        for k, f in schema.model_fields.items()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + f"  {row[4]}")
    return 0


def _type_name(annotation) -> str:
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(annotation))
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return text or str(annotation).replace("typing.", "")


def cmd_runs(args: argparse.Namespace) -> int:
    frame = tables.step_status(args.table, args.scale, root=project_root(), seeds=args.seeds)
    for _, r in frame.iterrows():
        where = f"  {r['folder']}" if r["folder"] else ""
        tag = f"{r['row']} seed {r['seed']}" if args.seeds > 1 else r["row"]
        print(f"{tag:24s} {r['step']:10s} {r['status']:9s}{where}")
        if r["outputs"]:
            print(f"{'':36s}{r['outputs']}")
        if args.metrics and r["metrics"]:
            print(f"{'':36s}" + ", ".join(f"{k} {v:.4g}" for k, v in sorted(r["metrics"].items())))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import report

    path = report.write(args.table, args.scale, root=project_root(), seeds=args.seeds)
    print(f"written: {path} (open it in a browser)")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    root = project_root()
    if args.verify:
        return _verify(root, args)
    rows = args.rows.split(",") if args.rows else None
    frame = tables.reproduce(
        args.table,
        args.scale,
        root=root,
        force=args.force,
        rows=rows,
        seeds=args.seeds,
        jobs=args.jobs,
    )
    print(frame.to_string(index=False))
    if rows is None:
        stem = tables.results_name(args.table, args.seeds)
        print(
            f"written: {tables.results_dir(root, args.scale) / stem}{{.md,.csv,_findings.csv,.png}}"
        )
    else:
        print("(some rows only: results/ left unchanged)")
    return 0


def _verify(root: Path, args: argparse.Namespace) -> int:
    """Rerun the table from nothing and say, row by row, whether each number repeats."""
    if args.rows or args.force:
        raise P.ParamsError(
            "--verify reruns the whole table from nothing: it takes no --rows or --force"
        )
    cells, scratch = tables.verify(args.table, args.scale, root=root, seeds=args.seeds)
    for row, group in cells.groupby("row", sort=False):
        differ = group[~group["same"]]
        if differ.empty:
            print(f"same       {row}: all {len(group)} values")
        for _, c in differ.iterrows():
            print(f"DIFFERENT  {row} {c['column']}: committed {c['committed']}, rerun {c['rerun']}")
    same = bool(cells["same"].all())
    print(f"{'every value repeats' if same else 'some values differ'} (rerun in {scratch})")
    then = tables.committed_machine(root, args.table, args.scale, args.seeds)
    now = tables.machine()
    for key in ("cpu", "threads"):
        if then.get(key, "not recorded") != now[key]:
            print(f"  {key}: committed on {then.get(key, 'not recorded')}, rerun on {now[key]}")
    moved = {
        k: f"{v} -> {now['packages'].get(k)}"
        for k, v in then.get("packages", {}).items()
        if now["packages"].get(k) != v
    }
    if moved:
        print("  packages: " + ", ".join(f"{k} {v}" for k, v in sorted(moved.items())))
    return 0 if same else 1


def cmd_check(args: argparse.Namespace) -> int:
    root = project_root()
    if args.env:
        return _check_env(root, args.scale)
    for table in tables.available_tables(root):
        for scale in P.SCALES:
            tables.check_table(root, table, scale)
            print(f"ok  table {table} ({scale})")
    for path in sorted((root / "params").glob("*/*/*.yaml")):
        paper, scale, name = path.parts[-3], path.parts[-2], path.stem
        if paper == "tables":
            continue
        P.load(P.schema_for(paper, name), path)
        print(f"ok  {path.relative_to(root)}")
    return 0


def _check_env(root: Path, scale: str) -> int:
    """Java, devices and package versions, then every dataset the tables read at ``scale``."""
    from .kit import selfcheck

    info = selfcheck.environment()
    for key in ("java", "torch_device", "jax_devices", "torch", "jax", "transformers"):
        print(f"{key:13s} {info.get(key, '-')}")
    off = runs.off_constraints(root)
    print(
        f"{'packages':13s} "
        + (f"{len(off)} not at constraints.txt's versions, installed (pinned): " if off else "")
        + (", ".join(f"{k} {v}" for k, v in sorted(off.items())) or "as constraints.txt pins")
    )
    print(f"{'data':13s} $VIDREPRO_DATA = {data_root()}")
    ok = not info["java"].startswith("missing")
    for table in tables.available_tables(root):
        inputs = tables.data_inputs(root, table, scale)
        if not inputs:
            print(f"ok       {table}: synthetic data ({scale}), generated on first use")
        for path in sorted({str(p) for _, p in inputs.values()}):
            there = Path(path).exists()
            ok &= there
            print(f"{'ok' if there else 'MISSING':8s} {table}: {path}")
    return 0 if ok else 1


def cmd_tables(args: argparse.Namespace) -> int:
    root = project_root()
    for table in tables.available_tables(root):
        spec = tables.load_table(root, table)
        print(f"{table:28s} {spec.title}  ({len(spec.rows)} rows)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:

    kinds = datasets.KINDS if args.kind == "all" else (args.kind,)
    for kind in kinds:
        out = (
            (Path(args.out) / kind if args.kind == "all" else Path(args.out)) if args.out else None
        )
        path = (
            datasets.ensure(kind, args.seed, args.size, out)
            if not args.force
            else datasets.build(
                kind,
                out or datasets.default_location(kind, args.seed, args.size),
                args.seed,
                args.size,
            )
        )
        print(f"{kind:9s} {path}")
    return 0


def cmd_caption(args: argparse.Namespace) -> int:
    """``05_caption_your_video`` from a terminal: the same model checks and the same decoding."""
    from .blip2_video import pipeline
    from .blip2_video.params import CaptionParams

    p = _validated(
        CaptionParams,
        checkpoint=_typed_model(args.model),
        **_your_video(args),
        num_frames=args.frames,
        num_beams=args.beams,
    )
    model = pipeline.your_model(p)
    size = model.blip2.config.vision_config.image_size
    _, caption = pipeline.caption_file(model, p.video, p.num_frames, size, p.num_beams)
    print(caption)
    return 0


def cmd_states(args: argparse.Namespace) -> int:
    """``03_your_video`` from a terminal: the seconds of the initial state, action and end state."""
    from .object_states import pipeline
    from .object_states.params import YourVideoParams

    p = _validated(
        YourVideoParams,
        model=_typed_model(args.model),
        **_your_video(args),
        category=args.category,
        max_distance=args.max_distance,
    )
    try:
        model, category = pipeline.your_model(p)
    except ValueError as e:  # a category the model does not know
        raise P.ParamsError(str(e)) from None
    found = pipeline.find_state_change(model, p.video, category, p.max_distance)
    print(f"{p.video}: {found.probs.shape[1]} s at 1 fps, category {category}")
    for i, name in enumerate(("initial state", "action", "end state")):
        second = found.chosen[i]
        print(f"  {name:13s} {second:4d} s   p = {float(found.probs[i, second]):.3f}")
    return 0


def _your_video(args: argparse.Namespace) -> dict[str, object]:
    return {"video": str(_typed_file(args.video)), "allow_untrained": args.allow_untrained}


def _validated(schema: type[P.Params], **values) -> P.Params:
    return P.validate(schema, values, "the command line")


def _typed_file(text: str) -> Path:
    """A file a user typed, relative to the current directory."""
    path = Path(text).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"{text}: no such file ({path})")
    return path


def _typed_model(text: str) -> str:
    """A model a user typed: a folder relative to the current directory when there is one,
    else the text as given (a config name or hub id, checked by the loader)."""
    path = Path(text).expanduser()
    return str(path.resolve()) if path.exists() else text


def _table_list() -> str:
    try:
        return ", ".join(tables.available_tables(project_root())) or "none"
    except Exception:  # noqa: BLE001 - help must print outside a project too
        return "see `vidrepro tables`"


def _your_video_parser(
    sub, name: str, what: str, video: str, model: str, config: str
) -> argparse.ArgumentParser:
    """A "your video" command: the video, a trained model, and the explicit opt-in to an
    untrained one."""
    cmd = sub.add_parser(name, help=what)
    cmd.add_argument("video", help=video)
    cmd.add_argument("--model", required=True, help=model)
    cmd.add_argument(
        "--allow-untrained",
        action="store_true",
        help=f"accept a config name ({config}) as --model: an untrained model, its output noise",
    )
    return cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vidrepro", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {metadata.version('vidrepro')}"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    known = _table_list()

    run = sub.add_parser("run", help="execute one notebook with validated params")
    run.add_argument("notebook", help="path to a notebook, e.g. notebooks/merlot/01_pretrain.ipynb")
    run.add_argument("--params", help="params YAML (default: params/<paper>/<scale>/<name>.yaml)")
    run.add_argument("--scale", default="tiny", choices=P.SCALES)
    run.add_argument("-p", action="append", metavar="KEY=VALUE", help="override one parameter")
    run.add_argument("--out", help="run folder (default: runs/manual/<name>-<time>)")
    run.set_defaults(func=cmd_run)

    rep = sub.add_parser("reproduce", help="regenerate a result table", epilog=f"tables: {known}")
    rep.add_argument("table", help=f"one of: {known}")
    rep.add_argument("--scale", default="tiny", choices=P.SCALES)
    rep.add_argument("--force", action="store_true", help="rerun finished steps too")
    rep.add_argument("--rows", help="comma-separated row ids (default: all)")
    rep.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="run every row with seeds 0..N-1: means and standard deviations",
    )
    rep.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="rows run side by side (default: tiny scale one per core, as each "
        "kernel uses one thread; full scale 1); the numbers do not change",
    )
    rep.add_argument(
        "--verify",
        action="store_true",
        help="rerun the table from nothing in runs/verify/ (data too) and report, "
        "row by row, whether every value matches the committed CSV",
    )
    rep.set_defaults(func=cmd_reproduce)

    prm = sub.add_parser("params", help="list a notebook's parameters: type, value, default, help")
    prm.add_argument("notebook", help="path to a notebook, e.g. notebooks/bmhrl/03_hrl.ipynb")
    prm.add_argument(
        "--scale", default="tiny", choices=P.SCALES, help="whose params file gives the values"
    )
    prm.set_defaults(func=cmd_params)

    status = sub.add_parser(
        "runs", help="each step of a table: status, folder, outputs", epilog=f"tables: {known}"
    )
    status.add_argument("table", help=f"one of: {known}")
    status.add_argument("--scale", default="tiny", choices=P.SCALES)
    status.add_argument("--seeds", type=int, default=1, help="the steps of seeds 0..N-1")
    status.add_argument(
        "--metrics",
        action="store_true",
        help="also each finished step's metrics (losses, diagnostics)",
    )
    status.set_defaults(func=cmd_runs)

    rpt = sub.add_parser(
        "report",
        help="write results/<table>.html: the table, its findings and figure, each step's "
        "executed notebook",
        epilog=f"tables: {known}",
    )
    rpt.add_argument("table", help=f"one of: {known}")
    rpt.add_argument("--scale", default="tiny", choices=P.SCALES)
    rpt.add_argument("--seeds", type=int, default=1, help="the report of a --seeds N table")
    rpt.set_defaults(func=cmd_report)

    data = sub.add_parser("data", help="synthetic datasets in the real formats")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    synth = data_sub.add_parser("synth", help="generate (or find) a synthetic dataset")
    synth.add_argument("--kind", default="all", choices=("all", *datasets.KINDS))
    synth.add_argument(
        "--out",
        help="folder (default: $VIDREPRO_DATA or data/, synthetic/<size>-seed<seed>/<kind>)",
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", default="tiny", choices=("tiny", "small"))
    synth.add_argument("--force", action="store_true", help="regenerate even if present")
    synth.set_defaults(func=cmd_data)

    check = sub.add_parser(
        "check",
        help="validate all tables and params (--env: this machine: Java, devices, datasets)",
    )
    check.add_argument(
        "--env",
        action="store_true",
        help="check Java, the devices torch and JAX see, and the data a scale reads",
    )
    check.add_argument(
        "--scale", default="full", choices=P.SCALES, help="whose datasets --env looks for"
    )
    check.set_defaults(func=cmd_check)
    sub.add_parser("tables", help="list the tables").set_defaults(func=cmd_tables)

    cap = _your_video_parser(
        sub,
        "caption",
        "BLIP-2: caption a video of yours with a trained model",
        "a video file (any length; frames sampled uniformly)",
        "a model folder (the model output of 02_finetune or 03_scst; `vidrepro runs "
        "blip2_ablation` lists them) or a hub id",
        "tiny_t5",
    )
    cap.add_argument("--frames", type=int, default=8, help="frames sampled (default 8)")
    cap.add_argument("--beams", type=int, default=5, help="beam search width (default 5)")
    cap.set_defaults(func=cmd_caption)

    st = _your_video_parser(
        sub,
        "states",
        "object states: the seconds of initial state, action and end state",
        "a video file (any length; read at 1 frame per second)",
        "a 01_train model folder (`vidrepro runs object_states` lists them)",
        "tiny_vit",
    )
    st.add_argument(
        "--category", default="", help="what the video shows (default: the model's first)"
    )
    st.add_argument(
        "--max-distance", type=int, default=None, help="D: at most D s between state and action"
    )
    st.set_defaults(func=cmd_states)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except P.ParamsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except runs.StepFailed as e:
        print(f"step failed: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, runs.RecordError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
