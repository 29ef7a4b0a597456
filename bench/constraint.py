"""Benchmark the ordering constraint's O(T) argmax against the exhaustive O(T^3) search.

The paper's pseudo-labels need argmax over s1 < a < s2 of P_init(s1)·P_action(a)·P_end(s2)
(optionally a - s1 <= D, s2 - a <= D) for every training video. The original code searches all
triples in a CUDA kernel (one thread per s1, loops over a and s2). The baseline here is that
exhaustive search in vectorised torch (``brute_force_state_change``: the full T^3 score cube, in
chunks of s1 that keep it under ~128 MB; the kernel's loops visit only the ~T^3/6 ordered
triples, so on the same hardware it would do about 6x less work than this baseline), on the same
device as ours, ``best_state_change``.

Workloads: a batch of 8 videos (seeded uniform probabilities, float32) at T = 64, 256 and 1024,
each without D and with a D that binds (T/4, or the paper's 500 at T = 1024). Baseline and ours
alternate within each repetition, so load on the machine hits both alike; each figure is the
best repetition (ours: the mean of 20 calls per repetition). The exhaustive search at T = 1024
takes tens of seconds on a CPU, so it runs once per D (--quick: only without D). Both answers
must agree index for index, or the script stops. Target: >= 1000x at T = 256.
Results go to results/bench/constraint.json.

On a CPU, torch runs element-wise ops of more than a few thousand elements on its OpenMP thread
pool; on a loaded machine (other processes on the other cores) waking the pool can cost
milliseconds per op, which dominates ours at T = 1024 (B·T = 8192). ``--threads 1`` avoids it
(for both sides); the machine's load average is recorded with the results.

Usage: python bench/constraint.py [--quick] [--device cpu|cuda] [--batch 8] [--threads N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from machine import describe  # noqa: E402  (bench/machine.py)

from vidrepro.metrics.constraint import (
    best_state_change,
    brute_force_state_change,
)

TARGET = 1000.0
TARGET_LENGTH = 256
CUBE_ELEMENTS = 1 << 25  # scores per brute-force chunk (128 MB in float32)
INNER = 20  # calls of ours per repetition


def timed(fn: Callable[[], object], device: torch.device, calls: int = 1) -> float:
    """Mean wall time of ``calls`` calls, waiting for the device at both ends."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t) / calls


def workloads(quick: bool) -> list[tuple[int, int | None, int]]:
    """(T, D, baseline repetitions)."""
    if quick:
        return [(64, None, 3), (64, 16, 3), (256, None, 2), (256, 64, 2), (1024, None, 1)]
    return [
        (64, None, 5),
        (64, 16, 5),
        (256, None, 3),
        (256, 64, 3),
        (1024, None, 1),
        (1024, 500, 1),
    ]


def run_one(
    length: int, max_distance: int | None, reps: int, batch: int, device: torch.device
) -> dict[str, object]:
    """Check agreement, then time baseline and ours alternately; best repetition of each."""
    g = torch.Generator().manual_seed(length * 1000 + (max_distance or 0))
    probs = list(torch.rand(3, batch, length, generator=g).to(device))  # 3 x (B, T)
    chunk = max(1, CUBE_ELEMENTS // (batch * length * length))

    def baseline() -> object:
        return brute_force_state_change(*probs, max_distance=max_distance, chunk=chunk)

    def ours() -> object:
        return best_state_change(*probs, max_distance=max_distance)

    fast = ours()  # also the warm-up
    t = time.perf_counter()
    slow = baseline()  # the agreement check is also the first timed repetition
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t_base = time.perf_counter() - t
    for name, x, y in zip(fast._fields, fast, slow):
        if not torch.equal(x, y):
            raise SystemExit(f"T={length} D={max_distance}: {name} differs: {x} vs {y}")
    t_ours = timed(ours, device, INNER)
    for _ in range(reps - 1):
        t_base = min(t_base, timed(baseline, device))
        t_ours = min(t_ours, timed(ours, device, INNER))
    return {
        "T": length,
        "D": max_distance,
        "batch": batch,
        "baseline_reps": reps,
        "ours_reps": reps,
        "ours_calls_per_rep": INNER,
        "baseline_chunk_s1": chunk,
        "baseline_s": t_base,
        "ours_s": t_ours,
        "speedup": t_base / t_ours,
        "agree": True,
    }


def machine(device: torch.device) -> dict[str, object]:
    info = describe(
        torch_threads=torch.get_num_threads(), torch=torch.__version__, device=str(device)
    )
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and workloads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=8, help="videos per call")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    print(f"best state change, batch of {args.batch} videos on {device}")
    print(f"  {'T':>5} {'D':>5} {'exhaustive':>12} {'ours':>10} {'speed-up':>10}")
    for length, max_distance, reps in workloads(args.quick):
        row = run_one(length, max_distance, reps, args.batch, device)
        rows.append(row)
        print(
            f"  {length:5d} {max_distance or '-':>5} {row['baseline_s']:10.4f} s "
            f"{row['ours_s'] * 1e3:7.3f} ms {row['speedup']:9.0f}x"
        )
    at_target = [r for r in rows if r["T"] == TARGET_LENGTH]
    met = all(r["speedup"] >= TARGET for r in at_target)
    worst = min(r["speedup"] for r in at_target)
    print(
        f"  T = {TARGET_LENGTH}: lowest speed-up {worst:.0f}x (target >= {TARGET:.0f}x: "
        f"{'met' if met else 'NOT met'})"
    )

    out = Path(__file__).resolve().parents[1] / "results" / "bench" / "constraint.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": machine(device),
                "quick": args.quick,
                "workloads": rows,
                "target": {
                    "T": TARGET_LENGTH,
                    "speedup": TARGET,
                    "lowest_speedup": worst,
                    "met": met,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
