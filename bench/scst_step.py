"""One SCST step of the tiny video BLIP-2: where the time goes, and model FLOPs utilisation.

A step samples K captions per video, scores them (CIDEr-D reward), computes the baseline and
backpropagates the teacher-forced log-probabilities. The reward is timed twice in the same run:
with the kit's ``CiderD`` (corpus document frequencies, computed once) and with pycocoevalcap's
``Cider`` (what the paper's code called, after two Java PTB-tokenizer runs that are not even
counted here). MFU: FLOPs of the step counted by the torch profiler (``with_flops``: matmuls and convolutions) over the time,
against the FLOP/s of a large float32 matmul measured here (a practical peak for this machine).

Usage: python bench/scst_step.py [--steps 10] [--model FOLDER]   (writes results/bench/scst_step.json)
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))
from vidrepro.blip2_video import build, pipeline  # noqa: E402
from vidrepro.blip2_video.params import Data  # noqa: E402
from vidrepro.metrics.cider import CiderD  # noqa: E402
from vidrepro.rl.scst import SelfCritical, normalize  # noqa: E402


class Timed:
    def __init__(self):
        self.totals: dict[str, float] = {}

    def __call__(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
        return out


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--model", help="a model folder (default: a fresh tiny_t5)")
    args = parser.parse_args()
    torch.manual_seed(0)

    data = Data()
    clips = pipeline.videos(data, "train", args.frames, train=True)
    model = (
        build.from_pretrained(args.model)
        if args.model
        else build.from_config(
            "tiny_t5", pipeline.build_tokenizer([e.caption for e in clips.entries])
        )
    )
    critic = SelfCritical(
        CiderD([[normalize(c) for c in r] for r in clips.refs.values()]),
        k=args.k,
        baseline="loo",
        max_new_tokens=20,
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    rng = np.random.default_rng(0)
    t = Timed()
    from pycocoevalcap.cider.cider import Cider

    flops = 0
    for step in range(args.steps + 1):  # step 0 warms up, step 1 counts FLOPs: neither timed
        ids = [clips.ids[i] for i in rng.choice(len(clips.ids), args.batch, replace=False)]
        frames = torch.stack([clips.clip(i, train=True) for i in ids])
        refs = [clips.refs[i] for i in ids]
        timer = t if step >= 2 else Timed()
        with torch.no_grad():
            prefix = timer("visual prefix (no grad)", model.visual_prefix, frames)
            gen = timer(
                "sampling",
                model.generate,
                prefix=prefix,
                do_sample=True,
                num_return_sequences=args.k,
                max_new_tokens=20,
            )
        targets = model.clean_generated(gen)
        samples = model.decode(targets)
        refs_k = [r for r in refs for _ in range(args.k)]
        reward = timer("reward (CiderD)", critic.rewards, samples, refs_k)
        timer(
            "reward, pycocoevalcap Cider (not in the step)",
            Cider().compute_score,
            {i: [normalize(x) for x in r] for i, r in enumerate(refs_k)},
            {i: [normalize(s)] for i, s in enumerate(samples)},
        )
        advantage = torch.as_tensor(
            reward.reshape(args.batch, args.k)
            - reward.reshape(args.batch, args.k).mean(1, keepdims=True)
        )

        def grad_pass():
            logp = model(frames, targets, repeat=args.k)
            loss = -(logp.sum(1) * advantage.reshape(-1)).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

        if step == 1:  # count the FLOPs of one step's generation and gradient pass
            with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
                with torch.no_grad():
                    model.generate(
                        prefix=model.visual_prefix(frames),
                        do_sample=True,
                        num_return_sequences=args.k,
                        max_new_tokens=20,
                    )
                grad_pass()
            flops = sum(e.flops for e in prof.key_averages() if e.flops)
        else:
            timer("teacher-forced pass + backward + update", grad_pass)

    steps = args.steps - 1
    per_step = {k: v / steps for k, v in t.totals.items()}
    step_s = sum(v for k, v in per_step.items() if "pycocoevalcap" not in k)
    peak = matmul_peak()
    mfu = flops / step_s / peak
    reward_share = per_step["reward (CiderD)"] / step_s
    pycoco = per_step["reward, pycocoevalcap Cider (not in the step)"]
    print(
        f"SCST step, tiny_t5, {args.batch} videos x {args.frames} frames, K={args.k} "
        f"(mean of {steps} steps)"
    )
    for name, sec in per_step.items():
        print(f"  {name:48s} {sec * 1e3:8.1f} ms")
    print(f"  step total (CiderD reward)                       {step_s * 1e3:8.1f} ms")
    print(f"  reward share of the step: {reward_share:.1%} (target < 10%)")
    print(
        f"  pycocoevalcap reward would be {pycoco / per_step['reward (CiderD)']:.0f}x slower "
        f"and {pycoco / (step_s - per_step['reward (CiderD)'] + pycoco):.0%} of the step"
    )
    print(
        f"  FLOPs per step {flops / 1e9:.2f} GFLOP; {flops / step_s / 1e9:.2f} GFLOP/s; "
        f"matmul peak here {peak / 1e9:.1f} GFLOP/s; MFU {mfu:.1%}"
    )
    out = ROOT / "results" / "bench" / "scst_step.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "machine": {
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                },
                "config": vars(args),
                "per_step_s": per_step,
                "step_s": step_s,
                "reward_share": reward_share,
                "pycocoevalcap_over_ciderd": pycoco / per_step["reward (CiderD)"],
                "flops_per_step": flops,
                "matmul_peak_flops": peak,
                "mfu": mfu,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
