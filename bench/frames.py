"""Sparse frame sampling: seeking versus decoding every frame, on a long web-like video.

A 90 s, 25 fps, 320x240 H.264 clip is written twice: with a keyframe every 10 s (gop 250,
x264's default and common in downloaded video, the hard case for seeking) and every 2 s
(gop 50). On each, ``sample_frames(num_frames=8)`` (LAVIS uniform sampling, the BLIP-2 video
setting) and ``sample_frames(fps=1)`` (ChangeIt) are timed against the obvious baseline, in the
same run: decode every frame with PyAV and keep the sampled ones. Both must give the same
pixels. Results go to results/bench/frames.json; the target is >= 3x for num_frames=8.

    python bench/frames.py
"""

from __future__ import annotations

import datetime
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runnable from a checkout without installing

from vidrepro.video import probe, sample_frames, write_video  # noqa: E402

SECONDS, RATE, WIDTH, HEIGHT = 90, 25, 320, 240
GOPS = (250, 50)
REPEATS = 7
TARGET_RATIO = 3.0


def make_frames() -> np.ndarray:
    """(T, H, W, 3): a textured scene panning 2 px per frame with a square crossing it, so
    P and B frames carry real motion, as in camera footage (about 0.5 GB)."""
    rng = np.random.default_rng(0)
    n = SECONDS * RATE
    coarse = rng.integers(0, 256, (HEIGHT // 8, (WIDTH + 2 * n) // 8 + 1, 3), dtype=np.uint8)
    scene = np.kron(coarse, np.ones((8, 8, 1), np.uint8))  # (H, W + 2n, 3) blocky texture
    frames = np.empty((n, HEIGHT, WIDTH, 3), np.uint8)
    for i in range(n):
        frames[i] = scene[:, 2 * i : 2 * i + WIDTH]
        x = (3 * i) % (WIDTH - 40)
        frames[i, 100:140, x : x + 40] = 255
    return frames


def decode_all_and_pick(path: Path, indices: list[int]) -> np.ndarray:
    """The baseline: every frame through the decoder, only the sampled ones converted (with
    one shared reformatter, as sample_frames does, so only the decoding strategy differs)."""
    wanted, reformatter = set(indices), VideoReformatter()
    with av.open(str(path)) as container:
        picked = {
            i: reformatter.reformat(frame, format="rgb24").to_ndarray()
            for i, frame in enumerate(container.decode(video=0))
            if i in wanted
        }
    return np.stack([picked[i] for i in indices])  # (T, H, W, 3)


def compare(ours, base) -> tuple[dict, np.ndarray, np.ndarray]:
    """Time ``ours`` and ``base`` in alternation, so both see the same load on a shared
    machine; the ratio is the median of the per-round ratios. CPU time counts all threads."""
    ours_out, base_out = ours(), base()  # warm-up: page cache, lazy initialisation
    rows = []
    for _ in range(REPEATS):
        row = []
        for fn in (ours, base):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            row += [time.perf_counter() - start, time.process_time() - start_cpu]
        rows.append(row)  # [ours wall, ours cpu, base wall, base cpu]
    wall_o, cpu_o, wall_b, cpu_b = zip(*rows)
    med = statistics.median
    stats = {
        "sample_frames": {"wall_median_s": med(wall_o), "cpu_median_s": med(cpu_o)},
        "decode_all_and_pick": {"wall_median_s": med(wall_b), "cpu_median_s": med(cpu_b)},
        "ratio_wall": med(b / o for o, b in zip(wall_o, wall_b)),
        "ratio_cpu": med(b / o for o, b in zip(cpu_o, cpu_b)),
    }
    return stats, ours_out, base_out


def main() -> None:
    frames = make_frames()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for gop in GOPS:
            path = Path(tmp) / f"gop{gop}.mp4"
            start = time.perf_counter()
            write_video(path, frames, RATE, gop=gop)
            encode_s = time.perf_counter() - start
            n = probe(path).num_frames
            with av.open(str(path)) as c:
                keyframes = sum(p.is_keyframe for p in c.demux(video=0) if p.size)
            for label, kwargs, indices in (  # LAVIS's formula; one frame per second at 25 fps
                ("num_frames=8", {"num_frames": 8}, np.arange(0, n, n / 8).astype(int)),
                ("fps=1", {"fps": 1}, np.arange(0, n, RATE)),
            ):
                indices = indices.tolist()
                stats, got, expected = compare(
                    lambda: sample_frames(path, **kwargs),
                    lambda: decode_all_and_pick(path, indices),
                )
                run = {
                    "gop": gop,
                    "keyframes": keyframes,
                    "file_mb": round(path.stat().st_size / 2**20, 2),
                    "encode_s": round(encode_s, 2),
                    "sampling": label,
                    "samples": len(indices),
                    **stats,
                    "same_pixels": bool(np.array_equal(got, expected)),
                }
                ours, base = stats["sample_frames"], stats["decode_all_and_pick"]
                runs.append(run)
                print(
                    f"gop {gop:3d} ({keyframes:2d} keyframes) {label:12s} "
                    f"sample_frames {ours['wall_median_s'] * 1e3:6.1f} ms "
                    f"(cpu {ours['cpu_median_s'] * 1e3:6.1f})  "
                    f"decode-all {base['wall_median_s'] * 1e3:6.1f} ms "
                    f"(cpu {base['cpu_median_s'] * 1e3:6.1f})  "
                    f"x{run['ratio_wall']:.1f} wall, x{run['ratio_cpu']:.1f} cpu  "
                    f"same pixels: {run['same_pixels']}"
                )
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": {
            "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "pyav": av.__version__,
        "ffmpeg": {name: ".".join(map(str, v)) for name, v in av.library_versions.items()},
        "video": {
            "seconds": SECONDS,
            "fps": RATE,
            "width": WIDTH,
            "height": HEIGHT,
            "frames": int(len(frames)),
            "codec": "libx264 (x264 defaults, B-frames on)",
        },
        "repeats": REPEATS,
        "timing": "medians over repeats, sample_frames and baseline alternating in one run; "
        "ratios are medians of per-round ratios",
        "target_ratio_num_frames_8": TARGET_RATIO,
        "runs": runs,
    }
    out = ROOT / "results" / "bench" / "frames.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    if not all(r["same_pixels"] for r in runs):
        sys.exit("seek path and decode-everything disagree")


if __name__ == "__main__":
    main()
