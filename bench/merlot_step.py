"""Benchmark MERLOT's jitted pretraining step (all three objectives, AdamW update).

For each size (tiny; base with --base) on the devices JAX sees: compile time, then the median
step time over repetitions and examples/s. The baseline is the same step on one device; the
ratio is the data-parallel run on all devices against it. On a 2-core CPU the 8 "devices" of
``--fake-devices 8`` share the cores, so the ratio shows the cost of sharding, not a speed-up.
Model FLOPs per step come from XLA's cost analysis; on a GPU or TPU the utilisation (MFU)
against the chip's peak (``--peak-tflops``) is printed too. Results go to
results/bench/merlot_step.json.

Usage: python bench/merlot_step.py [--base [--base-batch 8] [--base-image H W]] [--fsdp]
       [--fake-devices 8] [--steps 5] [--peak-tflops X]

The base size at batch 8 needs more than 24 GB on CPU (XLA asked for one 26 GB buffer), so a
laptop runs it with ``--base-batch 2``; a sharded run needs the batch divisible by the device
count and is skipped otherwise. On 8 fake devices a replicated base model is 8 copies of its
weights and Adam moments in one host's memory (about 50 GB): ``--fsdp`` shards them instead. Each
fake device still gathers the full fp32 weights for its part of the step: XLA plans 2.2 GB of
buffers per device beside its 0.57 GB share of the state at a quarter of the paper's pixels
(``--base-image 96 176``), 22 GB for 8, which was killed on a 24 GB host; at 64x112 it plans
1.5 GB per device and runs (peak 22 GB resident). Each run prints XLA's plan to stderr right
after compiling, before the step can run out of memory (``temp_gb_per_device`` in the results):

    python bench/merlot_step.py --base --base-batch 8 --base-image 64 112 --fsdp --steps 2
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(
    size: str,
    batch: int,
    segments: int,
    steps: int,
    devices: int | None,
    image: tuple[int, int] | None = None,
    fsdp: bool = False,
) -> dict:
    import jax
    import numpy as np

    from vidrepro.merlot import models, train
    from vidrepro.merlot import objectives as O

    cfg = models.ModelConfig.named(size)
    if jax.default_backend() == "cpu":
        cfg = replace(cfg, dtype="float32")  # bf16 matmuls are emulated on CPU
    if image:
        cfg = replace(cfg, image_size=tuple(image))
    params = jax.jit(partial(models.init_params, cfg))(jax.random.key(0))
    tx = train.optimizer(train.OptimConfig(steps=1000, lr=1e-4, warmup=10))
    mesh = train.make_mesh(jax.devices()[:devices] if devices else None)
    state = train.create_state(params, tx)
    shardings = train.param_sharding(mesh, state, fsdp=fsdp)
    state = jax.device_put(state, shardings)
    step = train.make_step(
        partial(train.pretrain_losses, cfg=cfg, obj=O.Objectives()), tx, mesh, shardings
    )
    rng = np.random.default_rng(0)
    text = rng.integers(O.SPECIAL_IDS, cfg.vocab_size, (batch, segments, cfg.text_len), np.int32)
    text[:, :, 0] = O.START
    data = train.shard_batch(
        mesh,
        {
            "frames": rng.normal(size=(batch, segments, *cfg.image_size, 3)).astype(np.float32),
            "text": text,
        },
    )
    key = jax.random.key(0)
    t = time.perf_counter()
    compiled = step.lower(state, data, key).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    memory = compiled.memory_analysis()  # one device's buffers, as XLA planned them
    temp_gb = getattr(memory, "temp_size_in_bytes", 0) / 2**30
    print(
        f"{size} on {mesh.size} device(s): XLA plans {temp_gb:.2f} GB of buffers per device",
        file=sys.stderr,
        flush=True,
    )
    # XLA costs one partition of an SPMD program: the whole step is that times the devices.
    flops = float((cost[0] if isinstance(cost, list) else cost).get("flops", 0.0)) * mesh.size
    state, metrics = compiled(state, data, key)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, data, key)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    step_s = float(np.median(times))
    return {
        "size": size,
        "devices": mesh.size,
        "backend": jax.default_backend(),
        "batch": batch,
        "segments": segments,
        "image": list(cfg.image_size),
        "fsdp": fsdp,
        "dtype": cfg.dtype,
        "params": models.count_params(params),
        "temp_gb_per_device": temp_gb,
        "compile_s": compile_s,
        "step_s": step_s,
        "examples_per_s": batch / step_s,
        "flops_per_step": flops,
        "tflops_per_s": flops / step_s / 1e12,
    }


def on_fake_devices(n: int, args: argparse.Namespace) -> list[dict]:
    """Rerun this script in a child with ``n`` host devices (the flag must precede jax)."""
    env = {
        **os.environ,
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
        "JAX_PLATFORMS": "cpu",
    }
    cmd = (
        [sys.executable, __file__, "--child", "--steps", str(args.steps)]
        + (["--base", "--base-batch", str(args.base_batch)] if args.base else [])
        + (["--base-image", *map(str, args.base_image)] if args.base_image else [])
        + (["--fsdp"] if args.fsdp else [])
    )
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:  # SIGKILL (-9): the host ran out of memory
        sys.exit(
            f"the run on {n} fake devices failed (exit {out.returncode}"
            f"{', killed: out of memory?' if out.returncode == -9 else ''}):\n"
            f"{out.stderr[-2000:]}"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def runs(args: argparse.Namespace, sharded: list[dict] = ()) -> list[dict]:
    """One-device and all-device runs of each size; ``sharded``: all-device runs a child with
    fake devices measured first (the child does only those: a base model's one-device run
    alongside would not fit in memory)."""
    import jax

    sizes = [("tiny", 16, 5, None)] + (
        [("base", args.base_batch, 4, args.base_image)] if args.base else []
    )
    out = []
    for size, batch, segments, image in sizes:
        many = len(jax.devices()) > 1 and batch % len(jax.devices()) == 0
        if args.child:
            if many:
                out.append(
                    measure(
                        size, batch, segments, args.steps, devices=None, image=image, fsdp=args.fsdp
                    )
                )
            continue
        one = measure(size, batch, segments, args.steps, devices=1, image=image)
        out.append({**one, "ratio_vs_one_device": 1.0})
        if many:
            sharded = [
                *sharded,
                measure(
                    size, batch, segments, args.steps, devices=None, image=image, fsdp=args.fsdp
                ),
            ]
        out += [
            {**r, "ratio_vs_one_device": r["examples_per_s"] / one["examples_per_s"]}
            for r in sharded
            if r["size"] == size
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", action="store_true", help="also the base size (slow on CPU)")
    parser.add_argument("--base-batch", type=int, default=8, help="examples per base step")
    parser.add_argument(
        "--base-image",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="base frame size (default: the config's 192 352)",
    )
    parser.add_argument(
        "--fsdp",
        action="store_true",
        help="shard the parameters over the devices (else replicated)",
    )
    parser.add_argument("--fake-devices", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, help="the accelerator's peak, for MFU")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "lib"))
    sys.path.insert(0, str(ROOT / "bench"))
    if args.child:
        print(json.dumps(runs(args)))
        return
    import jax

    sharded = (
        on_fake_devices(args.fake_devices, args)
        if jax.default_backend() == "cpu" and args.fake_devices > 1
        else []
    )
    results = runs(args, sharded)
    from machine import describe

    print(
        f"{'size':6} {'dev':>4} {'batch':>5} {'compile s':>10} {'step s':>8} {'ex/s':>8} "
        f"{'TFLOP/s':>8} {'vs 1 dev':>8}" + ("  MFU" if args.peak_tflops else "")
    )
    for r in results:
        mfu = f"  {r['tflops_per_s'] / args.peak_tflops:.1%}" if args.peak_tflops else ""
        print(
            f"{r['size']:6} {r['devices']:4d} {r['batch']:5d} {r['compile_s']:10.1f} "
            f"{r['step_s']:8.3f} {r['examples_per_s']:8.1f} {r['tflops_per_s']:8.3f} "
            f"{r['ratio_vs_one_device']:7.2f}x{mfu}"
        )
        if args.peak_tflops:
            r["mfu"] = r["tflops_per_s"] / args.peak_tflops
    out = ROOT / "results" / "bench" / "merlot_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(),
                "machine": describe(jax=jax.__version__, backend=jax.default_backend()),
                "runs": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
