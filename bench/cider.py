"""Benchmark vidrepro's CIDEr-D against pycocoevalcap's ``Cider``.

Two workloads, both on a seeded synthetic corpus shaped like MSR-VTT's test
split (2,990 videos x 20 references, ~10-word captions, Zipf-distributed words
from a ~2k vocabulary):

* evaluation: ``cider_d`` vs ``Cider().compute_score`` on the whole corpus,
  best of 3 (2 with --quick) (target: >= 20x);
* SCST reward: ``CiderD.scores`` vs ``Cider().compute_score`` on a batch of 160
  candidates (32 videos x 5 samples) x 20 references, median over 20 batches
  (5 with --quick) (target: >= 30x). pycocoevalcap's df comes from the batch, ours from the
  corpus: the baseline is what SCST code calls, not the same numbers.

Baseline and ours alternate within each repetition, so load on the machine
hits both alike. Results go to results/bench/cider.json.

Usage: python bench/cider.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pycocoevalcap.cider.cider import Cider

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))
from machine import describe  # noqa: E402  (bench/machine.py)

from vidrepro.kit.selfcheck import cider_agreement  # noqa: E402
from vidrepro.metrics.cider import CiderD, cider_d  # noqa: E402

TARGET_EVAL = 20.0
TARGET_REWARD = 30.0


def synthetic_corpus(
    n_items: int, n_refs: int, vocab: int, seed: int
) -> tuple[dict[int, list[str]], np.random.Generator, Callable[[], str]]:
    """References {item: [caption, ...]} and a caption sampler from the same distribution."""
    rng = np.random.default_rng(seed)
    words = np.array([f"w{i}" for i in range(vocab)])
    p = 1.0 / np.arange(1, vocab + 1) ** 1.1  # Zipf-like word frequencies
    p /= p.sum()

    def caption() -> str:
        return " ".join(words[rng.choice(vocab, rng.integers(6, 15), p=p)])

    return {i: [caption() for _ in range(n_refs)] for i in range(n_items)}, rng, caption


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def best_of(reps: int, *fns: Callable[[], object]) -> list[float]:
    """Best wall time of each function, running them in turn ``reps`` times."""
    best = [float("inf")] * len(fns)
    for _ in range(reps):
        best = [min(b, timed(fn)) for b, fn in zip(best, fns)]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and batches")
    args = parser.parse_args()
    eval_reps, batches = (2, 5) if args.quick else (3, 20)

    gts, rng, caption = synthetic_corpus(2990, 20, 2000, seed=0)
    res = {i: [caption()] for i in gts}

    # The agreement check is also the first timed repetition.
    first = cider_agreement(gts, res)
    t_eval_ref, t_eval = first["cider_pycocoevalcap_s"], first["cider_vidrepro_s"]
    max_diff = first["cider_max_abs_diff"]
    if max_diff > 1e-6:
        raise SystemExit(f"cider_d disagrees with pycocoevalcap: max abs diff {max_diff:.3g}")
    more_ref, more = best_of(
        eval_reps - 1, lambda: Cider().compute_score(gts, res), lambda: cider_d(gts, res)
    )
    t_eval_ref, t_eval = min(t_eval_ref, more_ref), min(t_eval, more)

    t = time.perf_counter()
    scorer = CiderD(gts)
    t_init = time.perf_counter() - t
    ids = list(gts)
    t_batch_ref, t_batch = [], []
    for _ in range(batches):
        videos = rng.choice(len(ids), 32, replace=False)
        refs = [gts[ids[v]] for v in videos for _ in range(5)]
        cands = [caption() for _ in refs]
        batch_gts = dict(enumerate(refs))
        batch_res = {i: [c] for i, c in enumerate(cands)}
        t_batch_ref.append(timed(lambda: Cider().compute_score(batch_gts, batch_res)))
        t_batch.append(timed(lambda: scorer.scores(cands, refs)))
    t_reward_ref, t_reward = float(np.median(t_batch_ref)), float(np.median(t_batch))

    eval_ratio, reward_ratio = t_eval_ref / t_eval, t_reward_ref / t_reward
    print("CIDEr-D, 2,990 items x 20 refs (best of %d)" % eval_reps)
    print(f"  pycocoevalcap Cider  {t_eval_ref:8.3f} s")
    print(f"  vidrepro cider_d     {t_eval:8.3f} s   max |diff| {max_diff:.1e}")
    print(
        f"  speed-up             {eval_ratio:8.1f}x  (target >= {TARGET_EVAL:.0f}x: "
        f"{'met' if eval_ratio >= TARGET_EVAL else 'NOT met'})"
    )
    print("SCST reward, 160 candidates x 20 refs (median of %d batches)" % batches)
    print(f"  pycocoevalcap Cider  {t_reward_ref * 1e3:8.2f} ms")
    print(f"  CiderD.scores        {t_reward * 1e3:8.2f} ms   (CiderD init {t_init:.2f} s, once)")
    print(
        f"  speed-up             {reward_ratio:8.1f}x  (target >= {TARGET_REWARD:.0f}x: "
        f"{'met' if reward_ratio >= TARGET_REWARD else 'NOT met'})"
    )

    out = Path(__file__).resolve().parents[1] / "results" / "bench" / "cider.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": describe(
                    numpy=np.__version__, pycocoevalcap=importlib.metadata.version("pycocoevalcap")
                ),
                "quick": args.quick,
                "eval": {
                    "items": len(gts),
                    "refs_per_item": 20,
                    "reps": eval_reps,
                    "pycocoevalcap_s": t_eval_ref,
                    "cider_d_s": t_eval,
                    "speedup": eval_ratio,
                    "target": TARGET_EVAL,
                    "met": eval_ratio >= TARGET_EVAL,
                    "max_abs_diff": max_diff,
                },
                "reward": {
                    "candidates": 160,
                    "videos": 32,
                    "samples_per_video": 5,
                    "refs_per_candidate": 20,
                    "batches": batches,
                    "pycocoevalcap_median_s": t_reward_ref,
                    "ciderd_scores_median_s": t_reward,
                    "ciderd_init_s": t_init,
                    "speedup": reward_ratio,
                    "target": TARGET_REWARD,
                    "met": reward_ratio >= TARGET_REWARD,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
