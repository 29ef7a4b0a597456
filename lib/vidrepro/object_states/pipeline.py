"""Glue between the notebooks' parameters and the library: the dataset, model folders, and the
evaluation (one process or several under ``torchrun``).

A model folder is what ``ClipClassifier.save`` writes (``model.safetensors``,
``classifier.json``) plus ``history.json`` and ``params.json``; a single-task run writes one
such folder per category under the run's folder, and evaluation combines them, each model
scoring the test videos of its own category.

Distributed evaluation: rank r scores videos r, r + world, ...; the predictions (a few floats
per frame) are gathered with ``all_gather_object`` and scored once, in the videos' order, on
every rank. No temporary files, no padding: every video is scored exactly once, whatever the
number of videos and processes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from ..data.formats import changeit
from ..data.synthetic.datasets import locate
from ..history import History
from ..metrics import states as metrics
from ..metrics.constraint import best_state_change
from ..metrics.states import StateScores, VideoPrediction
from ..params import untrained
from ..paths import data_path
from ..training import distributed
from .data import ChangeItData, TestVideo, decode, normalize
from .model import META_FILE, ClipClassifier, tiny_names
from .params import Data, EvalParams, YourVideoParams
from .targets import no_grad_probs

PARAMS = "params.json"


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def categories(p: Data) -> list[str] | None:
    return None if p.categories == "all" else list(p.categories)


def dataset(
    p: Data, image_size: tuple[int, int], names: Sequence[str] | None = None
) -> ChangeItData:
    """The params' dataset (the synthetic one when ``data_root`` is empty), restricted to
    ``names`` if given, else to ``p.categories``."""
    root = locate("states", p.data_root, p.data_seed, p.data_size)
    video_root = data_path(p.video_root) if p.video_root else None
    return ChangeItData(
        root,
        video_root,
        categories=names or categories(p),
        image_size=image_size,
        cache_videos=p.cache_videos,
    )


# --- folders -------------------------------------------------------------------------------


def save(folder: str | Path, model: ClipClassifier, history: History, p: Data) -> Path:
    folder = model.save(folder)
    history.save(folder)
    (folder / PARAMS).write_text(json.dumps(p.model_dump(mode="json"), indent=2) + "\n")
    return folder


def load_models(
    folder: str | Path, map_location: str | torch.device = "cpu"
) -> list[ClipClassifier]:
    """One model, or the per-category models of a single-task run (subfolders, name order)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such model folder ({folder.resolve()})")
    if (folder / META_FILE).is_file():
        return [ClipClassifier.load(folder, map_location)]
    parts = sorted(d for d in folder.glob("*") if (d / META_FILE).is_file())
    if not parts:
        raise FileNotFoundError(
            f"{folder}: not an object-states model folder (no {META_FILE} "
            f"in it or in its subfolders)"
        )
    return [ClipClassifier.load(d, map_location) for d in parts]


def load_or_new(model: str | Path, p: Data) -> list[ClipClassifier]:
    """``load_models`` for a folder; a config name (``tiny_vit``) gives an untrained model on
    the params' categories, seeded by ``p.seed``: the chance level of a table."""
    if Path(model).is_dir() or str(model) not in tiny_names():
        return load_models(model, device())
    names = categories(p) or [
        c.name
        for c in changeit.read_categories(locate("states", p.data_root, p.data_seed, p.data_size))
    ]
    torch.manual_seed(p.seed)
    return [ClipClassifier.from_config(str(model), names).to(device())]


# --- evaluation ----------------------------------------------------------------------------


def _owner(models: Sequence[ClipClassifier], category: str) -> ClipClassifier:
    owners = [m for m in models if category in m.category_index]
    if len(owners) != 1:
        raise ValueError(
            f"category {category!r}: {len(owners)} of the models know it, expected exactly one"
        )
    return owners[0]


def predict(
    models: ClipClassifier | Sequence[ClipClassifier],
    data: ChangeItData,
    videos: Sequence[TestVideo],
    progress: bool = True,
) -> list[VideoPrediction]:
    """Per-frame probabilities of each video's own category, by the model that knows it; the
    labels are the raw annotation (checked against the frame count)."""
    models = [models] if isinstance(models, ClipClassifier) else list(models)
    out = []
    for video in tqdm(videos, desc="predict", disable=not progress, leave=False):
        model = _owner(models, video.category).eval()
        frames = data.frames(video)  # (T, 3, H, W) uint8
        probs = no_grad_probs(model, normalize(frames), model.category_index[video.category])
        labels, _ = data.labels(video, len(frames))
        out.append(
            VideoPrediction(
                video.category, video.video_id, *(p.float().cpu().numpy() for p in probs), labels
            )
        )
    return out


def predict_distributed(
    models: ClipClassifier | Sequence[ClipClassifier],
    data: ChangeItData,
    videos: Sequence[TestVideo],
) -> list[VideoPrediction]:
    """``predict`` split over the processes (rank r: videos r::world) and gathered on all of
    them, in the order of ``videos``; one process: ``predict``."""
    rank, world = distributed()
    mine = list(range(rank, len(videos), world))
    local = list(zip(mine, predict(models, data, [videos[i] for i in mine], rank == 0)))
    if world == 1:
        return [v for _, v in local]
    gathered: list[list[tuple[int, VideoPrediction]] | None] = [None] * world
    dist.all_gather_object(gathered, local)
    merged = sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0])
    if [i for i, _ in merged] != list(range(len(videos))):
        raise RuntimeError(
            f"distributed evaluation gathered {len(merged)} predictions for {len(videos)} videos"
        )
    return [v for _, v in merged]


def test_videos(data: ChangeItData, per_category: int = 0) -> list[TestVideo]:
    """The annotated videos, the first ``per_category`` of each category (0: all)."""
    if not per_category:
        return list(data.test)
    return [v for c in data.names for v in [t for t in data.test if t.category == c][:per_category]]


def evaluate(
    model: str | Path | ClipClassifier | Sequence[ClipClassifier],
    p: EvalParams,
    data: ChangeItData | None = None,
) -> tuple[StateScores, list[VideoPrediction]]:
    """State and action precision@1 on the test videos of the models' categories (restricted
    to ``p.categories``), ground-truth category given, and the predictions they come from (in
    the order of ``scores.rows``). Under ``torchrun`` every rank returns the same."""
    models = (
        load_or_new(model, p)
        if isinstance(model, (str, Path))
        else [model]
        if isinstance(model, ClipClassifier)
        else list(model)
    )
    known = sorted({c for m in models for c in m.categories})
    wanted = known if p.categories == "all" else sorted(set(p.categories))
    if missing := [c for c in wanted if c not in known]:
        raise ValueError(f"no model for categories {missing} (the models know {known})")
    sizes = {m.image_size for m in models}
    if len(sizes) != 1:
        raise ValueError(f"the models take different image sizes: {sorted(sizes)}")
    data = data or dataset(p, sizes.pop(), wanted)
    videos = [v for v in test_videos(data, p.videos_per_category) if v.category in wanted]
    predictions = predict_distributed(models, data, videos)
    scores = metrics.evaluate(predictions, tolerance=p.tolerance, max_distance=p.max_distance)
    return scores, predictions


def your_model(p: YourVideoParams) -> tuple[ClipClassifier, str]:
    """The model a person runs on their own video (``03_your_video``, ``vidrepro states``) and
    the category to look for (``p.category``, else the model's first): a 01_train output (of a
    single-task run, the category's model); a config name only with ``p.allow_untrained``."""
    hint = "Point model at a 01_train output (`vidrepro runs object_states` lists them)"
    untrained("model", p.model, tiny_names(), p.allow_untrained, hint)
    models = load_or_new(p.model, p)
    category = p.category or models[0].categories[0]
    known = sorted(c for m in models for c in m.categories)
    if category not in known:
        raise ValueError(f"category {category!r}: {p.model} knows {known}")
    return _owner(models, category), category


def first_test_video(p: Data, image_size: tuple[int, int], category: str) -> Path:
    """The dataset's first annotated video of ``category``: a default for trying a model."""
    videos = [v for v in dataset(p, image_size, [category]).test if v.category == category]
    if not videos:
        raise ValueError(f"no annotated video of {category!r} in the dataset")
    return videos[0].path


def scores_json(scores: StateScores) -> dict:
    """What ``02_evaluate`` writes: the summary, the per-category means and per-video rows."""
    rows = [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()}
        for r in scores.rows
    ]
    return {
        "summary": scores.summary,
        "percent": scores.percent(),
        "per_category": scores.per_category,
        "num_videos": scores.num_videos,
        "rows": rows,
    }


# --- one video -----------------------------------------------------------------------------


class FoundChange(NamedTuple):
    """What :func:`find_state_change` sees in a video."""

    frames: Tensor  # uint8 (T, 3, H, W) at 1 fps, at the model's input size
    probs: Tensor  # float (3, T): p_init, p_action, p_end of the asked category
    chosen: tuple[int, int, int]  # (s1, a, s2): initial state, action, end state seconds


def find_state_change(
    model: ClipClassifier, video: str | Path, category: str, max_distance: int | None = None
) -> FoundChange:
    """Any video file and a category the model knows -> the seconds of its initial state,
    action and end state: the constrained argmax (s1 < a < s2) of the model's probabilities."""
    if category not in model.category_index:
        raise ValueError(f"category {category!r}: the model knows {model.categories}")
    frames = decode(video, model.image_size)  # (T, 3, H, W) uint8
    if len(frames) < 3:
        raise ValueError(f"{video}: {len(frames)} frames at 1 fps; a state change needs 3")
    probs = no_grad_probs(
        model.eval(), normalize(frames).to(device()), model.category_index[category]
    )
    s1, a, s2, _ = best_state_change(*probs, max_distance)
    return FoundChange(frames, torch.stack(probs).cpu(), (int(s1), int(a), int(s2)))
