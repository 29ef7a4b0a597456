"""Looking at a dataset through the same readers the papers use (``notebooks/00_data.ipynb``).

Every function takes a dataset folder in the real layout, so pointing it at a real download
instead of the synthetic one shows the real data the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import plots
from ..data.formats import activitynet, changeit, lavis, merlot, videoqa, vist
from ..data.formats.activitynet import I3D_DIR, VGGISH_DIR
from ..data.synthetic import datasets
from ..video import read_audio, sample_frames

STATE_NAMES = {
    changeit.BACKGROUND: "bg",
    changeit.INITIAL_STATE: "initial",
    changeit.ACTION: "action",
    changeit.END_STATE: "end",
}


def dataset_roots(params) -> dict[str, Path]:
    """Each kind's folder from its ``<kind>_root`` param (see ``datasets.locate``); kinds the
    params have no root for are left out, not generated."""
    return {
        kind: datasets.locate(kind, getattr(params, f"{kind}_root"), params.seed, params.size)
        for kind in datasets.KINDS
        if hasattr(params, f"{kind}_root")
    }


def caption_clip(root: Path, split: str = "test", index: int = 0, num_frames: int = 8):
    """Frames of one clip with its references (MSR-VTT layout), as a figure."""
    entries = lavis.read_captions(root / "annotations" / f"cap_{split}.json", root / "videos")
    refs = lavis.references(entries)
    image_id = list(refs)[index]
    video = next(e.video for e in entries if e.image_id == image_id)
    frames = sample_frames(root / "videos" / video, num_frames=num_frames)  # (T, H, W, 3)
    return plots.frame_grid(frames, caption=" | ".join(refs[image_id][:3]))


def image_pairs(root: Path, n: int = 8):
    pairs = lavis.read_captions(root / "annotations" / "cap_train.json", key="image")[::2][:n]
    frames = np.stack([plots.load_image(root / "images" / p.video) for p in pairs])
    return plots.frame_grid(frames, [p.caption for p in pairs], ncols=4, width=2.6)


def pretrain_video(root: Path, index: int = 0):
    """Frames sampled uniformly, one per transcript segment, titled with what was said."""
    video = merlot.read_segments(root)[index]
    path = merlot.video_path(root, video.video_id)
    frames = sample_frames(path, num_frames=len(video.segments))
    return plots.frame_grid(frames, [s.text for s in video.segments], ncols=4, width=2.6)


def qa_video(root: Path, split: str = "val", index: int = 0):
    """A QA video's frames (one per step) and its questions with the right answer starred."""
    items = videoqa.by_video(videoqa.read_qa(videoqa.annotation_path(root, split)))
    video_id = list(items)[index]
    frames = sample_frames(videoqa.video_path(root, video_id), num_frames=5)
    lines = [
        f"{q.question}  "
        + " | ".join(("*" if k == q.answer else "") + a for k, a in enumerate(q.answers))
        for q in items[video_id]
    ]
    fig = plots.frame_grid(frames, [""] * len(frames), ncols=5, width=2.6)
    fig.suptitle("\n".join(lines), fontsize=8, y=0.02, va="top")
    return fig


def story(root: Path, split: str = "val", index: int = 0):
    s = vist.read_stories(root / "sis" / f"{split}.story-in-sequence.json")[index]
    frames = np.stack(
        [plots.load_image(vist.find_image(root / "images" / split, pid)) for pid in s.photo_ids]
    )
    return plots.frame_grid(frames, list(s.texts), ncols=5, width=2.6)


def dense_video(root: Path, split: str = "val_1", index: int = 0):
    """Events of one video for both annotators (val_1, val_2) over its features and sound."""
    import matplotlib.pyplot as plt

    videos = {
        name: activitynet.read_annotations(root / f"{name}.json")[index]
        for name in ((split,) if split == "train" else ("val_1", "val_2"))
    }
    video = next(iter(videos.values()))
    rgb = activitynet.load_features(root / I3D_DIR, video.video_id, "rgb")  # (S, 1024)
    aud = activitynet.load_features(root / VGGISH_DIR, video.video_id, "audio")  # (S_a, 128)
    fig, axes = plt.subplots(
        2 + len(videos),
        1,
        figsize=(11, 2 + 1.3 * len(videos)),
        sharex=True,
        gridspec_kw={"height_ratios": [1, 1] + [1.3] * len(videos)},
    )
    for ax, feats, name in ((axes[0], rgb, "RGB"), (axes[1], aud, "audio")):
        z = (feats - feats.mean(0)) / (feats.std(0) + 1e-6)  # per dimension over time
        ax.imshow(
            z.T,
            aspect="auto",
            extent=(0, video.duration, 0, feats.shape[1]),
            cmap="magma",
            vmin=-2,
            vmax=2,
        )
        ax.set_ylabel(name, fontsize=8)
        ax.set_yticks([])
    for ax, (name, v) in zip(axes[2:], videos.items()):
        for k, e in enumerate(v.events):
            ax.barh(k, e.end - e.start, left=e.start, color="tab:blue", alpha=0.6)
            ax.text(e.start, k, " " + e.sentence, va="center", fontsize=7)
        ax.set_ylabel(name, fontsize=8)
        ax.set_yticks([])
    axes[-1].set_xlabel("seconds")
    fig.suptitle(f"{video.video_id} ({video.duration:.0f} s)")
    fig.tight_layout()
    return fig


def waveform(root: Path, split: str = "val_1", index: int = 0):
    """The soundtrack of a dense video (its mp4 under ``videos/``, named without ``v_``)."""
    import matplotlib.pyplot as plt

    video_id = activitynet.read_annotations(root / f"{split}.json")[index].video_id
    wave = read_audio(root / "videos" / f"{video_id.removeprefix('v_')}.mp4")
    fig, ax = plt.subplots(figsize=(11, 1.6))
    ax.plot(np.arange(len(wave)) / 16000, wave, lw=0.3)
    ax.set_xlabel("seconds")
    return fig


def state_video(root: Path, category: str | None = None, index: int = 0):
    """A ChangeIt test video at 1 fps, each frame titled with its annotated label."""
    categories = changeit.read_categories(root)
    category = category or categories[0].name
    vid = changeit.annotated_ids(root, category)[index]
    labels = changeit.read_annotation(root, category, vid)
    frames = sample_frames(changeit.find_video(root / "video_root", category, vid), fps=1)
    labels, _ = changeit.align(labels, len(frames))
    return plots.frame_grid(
        frames, [STATE_NAMES[int(x)] for x in labels], ncols=12, caption=f"{category}/{vid}"
    )


def relevance(root: Path):
    """Relevance scores per category against its centring parameter and the noise weights."""
    import matplotlib.pyplot as plt

    categories = changeit.read_categories(root)
    fig, axes = plt.subplots(1, len(categories), figsize=(3 * len(categories), 2.4), squeeze=False)
    for ax, c in zip(axes[0], categories):
        scores = np.array(list(changeit.read_scores(root, c.name).values()))
        weights = changeit.noise_weight(scores, c.centering)
        ax.hist(
            [scores[weights > 0.5], scores[weights <= 0.5]],
            bins=12,
            stacked=True,
            label=["weight ~1", "weight ~0"],
        )
        ax.axvline(c.centering, color="black", ls="--")
        ax.set_title(c.name, fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def summary(roots: dict[str, Path]) -> dict[str, int]:
    """How much of each kind there is: what the data notebook records as its metrics."""
    out: dict[str, int] = {}
    for split in ("train", "val", "test"):
        refs = lavis.references(
            lavis.read_captions(roots["captions"] / "annotations" / f"cap_{split}.json")
        )
        out[f"caption_clips_{split}"] = len(refs)
        out[f"stories_{split}"] = len(
            vist.read_stories(roots["stories"] / "sis" / f"{split}.story-in-sequence.json")
        )
    out["images"] = len(
        lavis.references(
            lavis.read_captions(roots["images"] / "annotations" / "cap_train.json", key="image")
        )
    )
    out["pretrain_videos"] = len(merlot.read_segments(roots["pretrain"], check_videos=False))
    for split in ("train", "val_1"):
        videos = activitynet.read_annotations(roots["dense"] / f"{split}.json")
        out[f"dense_videos_{split}"] = len(videos)
        out[f"dense_events_{split}"] = sum(len(v.events) for v in videos)
    if "qa" in roots:
        for split in ("train", "test"):
            out[f"qa_questions_{split}"] = len(
                videoqa.read_qa(videoqa.annotation_path(roots["qa"], split))
            )
    categories = changeit.read_categories(roots["states"])
    out["state_categories"] = len(categories)
    out["state_videos"] = sum(
        len(changeit.read_scores(roots["states"], c.name)) for c in categories
    )
    out["state_videos_annotated"] = sum(
        len(changeit.annotated_ids(roots["states"], c.name)) for c in categories
    )
    return out
