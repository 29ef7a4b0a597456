"""What the synthetic dense videos' I3D-style RGB rows say about the objects: a linear probe.

``features.video_features`` stands in for BMT's I3D features. If its RGB rows carry an object's
colour but not its shape, a captioner reading them cannot name the shape, and a bi-modal model
wins over the visual-only one partly because of the extractor. This script measures it without
touching any dataset folder: it renders its own single-object clips with the kit's scene and
render code (random shape, colour, size, position and background, one of the world's motion
events or none; 64 px frames at 4 fps, one 4-frame stack each, as ``build_dense`` uses),
computes one RGB row per clip with the old extractor (copied below as ``old_video_features``)
and the current one, and fits a ridge-regression probe on one-hot targets (ridge strength picked
on the last 20% of the training clips, then refitted on all of them) that predicts the shape and
the colour of held-out clips. The dense videos also hold two objects at times, so the same is
done on two-object clips (two colours, side by side): which shapes are present (four binary
ridge probes, score > 0.5) and which colour has which shape (24 colour-shape scores, the top two
must be the clip's two pairs). It also times both extractors on a 40 s, 4 fps, 64x64 dense clip.
Fixed seeds: the accuracies repeat exactly (timings depend on the machine).

    python bench/dense_features_probe.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable from a checkout without installing

from vidrepro.data.synthetic import features, render, scenes  # noqa: E402
from vidrepro.data.synthetic.world import BACKGROUNDS, COLOURS, MOVES, SHAPES, Event, Obj, Scene  # noqa: E402

N_TRAIN, N_TEST = 2000, 1000
SIZE, FPS, STACK = 64, 4, 4  # as datasets.build_dense at tiny scale (DENSE_FPS, DENSE_STACK)
EVENTS = (None, *MOVES, "grow", "shrink", "bounce", "split")
RIDGE = (0.1, 1.0, 10.0, 100.0, 1000.0)
SEED = 0


# --- the extractor before orientation histograms, verbatim --------------------------------------


def _old_pool(frames: np.ndarray, grid: int = 8) -> np.ndarray:
    t, h, w, c = frames.shape
    h, w = h - h % grid, w - w % grid
    x = frames[:, :h, :w].reshape(t, grid, h // grid, grid, w // grid, c)
    return x.mean(axis=(2, 4))


def _old_projection(seed: int, dim_in: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (dim_in, 1024)) / np.sqrt(dim_in)).astype(np.float32)


def old_video_features(frames: np.ndarray, stack: int) -> tuple[np.ndarray, np.ndarray]:
    """The old extractor: 8x8-pooled mean frame + colour histograms (RGB), pooled differences
    (flow), fixed seeded projections to 1024 with a ReLU."""
    x = frames.astype(np.float32) / 255.0
    rgb_rows, flow_rows = [], []
    for start in range(0, len(x), stack):
        chunk = x[start : start + stack]  # (<=stack, H, W, 3)
        hist = [
            np.histogram(chunk[..., c], bins=16, range=(0, 1))[0] / chunk[..., c].size
            for c in range(3)
        ]
        rgb_rows.append(np.concatenate([_old_pool(chunk).mean(0).ravel(), *hist]))
        diff = np.diff(chunk, axis=0) if len(chunk) > 1 else np.zeros_like(chunk)
        pooled = _old_pool(diff)  # (<=stack-1, G, G, 3)
        flow_rows.append(
            np.concatenate([pooled.mean(0).ravel() * 10, np.abs(pooled).mean(0).ravel() * 10])
        )
    rgb_in, flow_in = np.stack(rgb_rows), np.stack(flow_rows)  # (S, 240), (S, 384)
    rgb = np.maximum(rgb_in @ _old_projection(1024, rgb_in.shape[1]), 0)
    flow = np.maximum(flow_in @ _old_projection(2048, flow_in.shape[1]), 0)
    return rgb.astype(np.float32), flow.astype(np.float32)


# --- the probe set -------------------------------------------------------------------------------


def probe_clips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, STACK, SIZE, SIZE, 3) uint8 single-object clips, their shape and colour indices."""
    rng = np.random.default_rng(seed)
    clips, shapes, colours = [], [], []
    for _ in range(n):
        obj = scenes.random_object(rng)  # shape, colour, size as the datasets draw them
        obj = Obj(
            obj.shape,
            obj.colour,
            float(rng.uniform(0.2, 0.8)),
            float(rng.uniform(0.2, 0.8)),
            obj.size,
        )  # anywhere, not only near the centre
        kind = EVENTS[rng.integers(len(EVENTS))]
        start = float(rng.uniform(0, 0.5))
        events = () if kind is None else (Event(kind, start, start + 1.0, 0),)
        scene = Scene(1.5, list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], (obj,), events)
        frame_seed = int(rng.integers(1 << 30))
        clips.append(
            np.stack([render.render_still(scene, i / FPS, SIZE, frame_seed) for i in range(STACK)])
        )
        shapes.append(SHAPES.index(obj.shape))
        colours.append(list(COLOURS).index(obj.colour))
    return np.stack(clips), np.array(shapes), np.array(colours)


def pair_clips(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, STACK, SIZE, SIZE, 3) still clips of two objects of different colours, one in each
    half of the frame, and (n, 2) their colour-shape pair indices (colour * 4 + shape)."""
    rng = np.random.default_rng(seed)
    clips, pairs = [], []
    for _ in range(n):
        a = scenes.random_object(rng)
        b = scenes.random_object(rng)
        while b.colour == a.colour:
            b = scenes.random_object(rng)
        left, right = (0.2, 0.45), (0.55, 0.8)
        if rng.random() < 0.5:
            left, right = right, left
        objs = tuple(
            Obj(o.shape, o.colour, float(rng.uniform(*xs)), float(rng.uniform(0.2, 0.8)), o.size)
            for o, xs in ((a, left), (b, right))
        )
        scene = Scene(1.5, list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))], objs)
        frame_seed = int(rng.integers(1 << 30))
        clips.append(
            np.stack([render.render_still(scene, i / FPS, SIZE, frame_seed) for i in range(STACK)])
        )
        pairs.append(
            [list(COLOURS).index(o.colour) * len(SHAPES) + SHAPES.index(o.shape) for o in objs]
        )
    return np.stack(clips), np.array(pairs)


def _ridge(x: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ targets)


def fit_probe(train: np.ndarray, targets: np.ndarray, test: np.ndarray, score) -> tuple:
    """Ridge probe from rows to ``targets`` (N_train, K); the strength with the best ``score``
    (of predicted (N, K) scores and true targets) on the last 20% of the training rows, refitted
    on all of them. Returns (that strength, the test rows' (N_test, K) scores)."""
    mu, sd = train.mean(0), train.std(0) + 1e-6
    prep = lambda x: np.hstack([(x - mu) / sd, np.ones((len(x), 1))])  # noqa: E731
    train, test = prep(train.astype(np.float64)), prep(test.astype(np.float64))
    cut = int(0.8 * len(train))
    val = [
        score(train[cut:] @ _ridge(train[:cut], targets[:cut], lam), targets[cut:]) for lam in RIDGE
    ]
    lam = RIDGE[int(np.argmax(val))]
    return lam, test @ _ridge(train, targets, lam)


def argmax_accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float((scores.argmax(1) == targets.argmax(1)).mean())


def presence_accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    return float(((scores > 0.5) == (targets > 0.5)).mean())


def top2_accuracy(scores: np.ndarray, targets: np.ndarray) -> float:
    top = np.sort(np.argsort(-scores, 1)[:, :2], 1)
    return float((top == np.sort(np.argsort(-targets, 1)[:, :2], 1)).all(1).mean())


def per_class(pred: np.ndarray, y: np.ndarray, names) -> str:
    return " ".join(f"{n} {(pred[y == i] == i).mean():.3f}" for i, n in enumerate(names))


def time_extractor(fn, frames: np.ndarray, repeats: int = 7) -> tuple[float, float]:
    """Median and minimum seconds of ``fn(frames, STACK)`` after one warm-up call (the new
    extractor caches its projections; the old one draws them on every call)."""
    fn(frames, STACK)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn(frames, STACK)
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def main() -> None:
    t0 = time.perf_counter()
    clips, shapes, colours = probe_clips(N_TRAIN + N_TEST, SEED)
    two, pairs = pair_clips(N_TRAIN + N_TEST, SEED + 1)
    print(
        f"probe sets: {N_TRAIN} train / {N_TEST} test clips each, single-object and two-object "
        f"({STACK} frames, {SIZE}x{SIZE}, {FPS} fps), "
        f"rendered in {time.perf_counter() - t0:.1f} s"
    )
    present = np.zeros((len(pairs), len(SHAPES)))
    np.put_along_axis(present, pairs % len(SHAPES), 1, axis=1)
    pair_targets = np.zeros((len(pairs), len(COLOURS) * len(SHAPES)))
    np.put_along_axis(pair_targets, pairs, 1, axis=1)
    absent = 1 - present[N_TRAIN:].mean()
    print(
        f"chance: shape {1 / len(SHAPES):.3f} ({len(SHAPES)} shapes), colour "
        f"{1 / len(COLOURS):.3f} ({len(COLOURS)} colours); two objects: shape present "
        f"{absent:.3f} (always 'absent'), colour-shape pairs {1 / 240:.3f} (1 of 15 x 16)"
    )
    long_scene = scenes.caption_clip(
        np.random.default_rng(SEED), 40.0, max_events=6, sound_prob=0.25
    )
    long_clip = render.render(long_scene, FPS, SIZE, SEED)  # (160, 64, 64, 3)
    print()
    print(f"{'':9s} {'one object':>15s}  {'two objects':>20s}  time per 40 s clip")
    print(
        f"{'extractor':9s} {'shape':>6s} {'colour':>8s}  {'shapes':>8s} {'pairs':>11s}  "
        f"({len(long_clip)} frames), median / min of 7"
    )
    for name, fn in (("old", old_video_features), ("new", features.video_features)):
        rows = np.stack([fn(c, STACK)[0][0] for c in clips])  # (N, 1024): one RGB row per clip
        rows2 = np.stack([fn(c, STACK)[0][0] for c in two])
        tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
        accs = []
        for x, targets, score in (
            (rows, np.eye(len(SHAPES))[shapes], argmax_accuracy),
            (rows, np.eye(len(COLOURS))[colours], argmax_accuracy),
            (rows2, present, presence_accuracy),
            (rows2, pair_targets, top2_accuracy),
        ):
            _, scores = fit_probe(x[tr], targets[tr], x[te], score)
            accs.append(score(scores, targets[te]))
            if len(accs) == 1:
                shape_pred = scores.argmax(1)
        med, best = (1000 * v for v in time_extractor(fn, long_clip))
        print(
            f"{name:9s} {accs[0]:6.3f} {accs[1]:8.3f}  {accs[2]:8.3f} {accs[3]:11.3f}  "
            f"{med:.1f} / {best:.1f} ms"
        )
        print(f"{'':9s} shape per class: {per_class(shape_pred, shapes[N_TRAIN:], SHAPES)}")
    print(
        "(times: the old extractor draws its two projection matrices on every call, the new one"
        " once per process)"
    )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
