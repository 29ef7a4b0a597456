"""Checks that an installation can do what the papers' notebooks need: decode video, run the
caption metrics (Java), see its accelerators. Used by ``notebooks/kit/00_selfcheck.ipynb``."""

from __future__ import annotations

import shutil
import subprocess
import time

import numpy as np

from .. import runs


def environment() -> dict[str, str]:
    """Package versions, the devices torch and JAX see, and the Java that METEOR will use."""
    import jax
    import torch

    info = runs.package_versions()
    info["torch_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    kinds: dict[str, int] = {}
    for d in jax.devices():
        kinds[d.platform] = kinds.get(d.platform, 0) + 1
    info["jax_devices"] = ", ".join(f"{k} x{n}" for k, n in kinds.items())
    java = shutil.which("java")
    if java is None:
        info["java"] = "missing: METEOR and the PTB tokenizer will not run"
    else:
        out = subprocess.run([java, "-version"], capture_output=True, text=True)
        info["java"] = (out.stderr or out.stdout).splitlines()[0]
    return info


def moving_square(seconds: float, fps: int, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8: a white square sliding left to right over a dark background,
    so a sampled frame's time can be read back from the square's position."""
    t = int(round(seconds * fps))
    side = size // 4
    frames = np.full((t, size, size, 3), 30, np.uint8)
    xs = np.linspace(0, size - side, t).round().astype(int)  # (T,) left edge per frame
    for i, x in enumerate(xs):
        frames[i, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = 255
    return frames


def square_position(frames: np.ndarray) -> np.ndarray:
    """(T,) x of the square's centre in each frame: the inverse of :func:`moving_square`."""
    bright = frames.mean(axis=-1) > 128  # (T,H,W)
    cols = bright.any(axis=1)  # (T,W)
    return np.array([np.flatnonzero(c).mean() if c.any() else np.nan for c in cols])


def random_corpus(
    items: int, refs: int, seed: int = 0, vocab: int = 2000, length: tuple[int, int] = (6, 14)
) -> tuple[dict, dict]:
    """Tokenised captions with Zipf-distributed words: ``gts {id: [ref]*refs}``,
    ``res {id: [hyp]}``; hypotheses reuse reference words so scores are not all zero."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1)
    p /= p.sum()

    def sentence() -> list[str]:
        return [f"w{i}" for i in rng.choice(vocab, rng.integers(*length), p=p)]

    gts = {str(i): [" ".join(sentence()) for _ in range(refs)] for i in range(items)}
    res = {}
    for i, refs_i in gts.items():
        words = refs_i[0].split()[: rng.integers(2, 8)] + sentence()[: rng.integers(1, 6)]
        res[i] = [" ".join(words)]
    return gts, res


def cider_agreement(gts: dict, res: dict) -> dict[str, float]:
    """The kit's vectorised CIDEr-D against pycocoevalcap's on the same corpus."""
    from pycocoevalcap.cider.cider import Cider

    from ..metrics.cider import cider_d

    start = time.perf_counter()
    ref_score, ref_items = Cider().compute_score(gts, res)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    score, items = cider_d(gts, res)
    t_fast = time.perf_counter() - start
    return {
        "cider_pycocoevalcap": float(ref_score),
        "cider_vidrepro": float(score),
        "cider_max_abs_diff": max(
            abs(ref_score - score), float(np.max(np.abs(np.asarray(ref_items) - items)))
        ),
        "cider_pycocoevalcap_s": t_ref,
        "cider_vidrepro_s": t_fast,
        "cider_speedup": t_ref / t_fast,
    }
