"""Parameters of the object-state-change notebooks (``notebooks/object_states/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..params import Params, one_of


class Data(Params):
    """An empty root means the synthetic ChangeIt (generated if missing); otherwise a ChangeIt
    folder relative to ``$VIDREPRO_DATA`` (``categories.csv``, ``videos/<cat>.csv``,
    ``annotations/``), with the videos under ``video_root/<cat>/<id>.(mp4|webm)``."""

    data_root: str = ""
    video_root: str = Field(
        "",
        description="empty: <data_root>/video_root (the synthetic "
        "layout); else relative to $VIDREPRO_DATA",
    )
    data_seed: int = 0
    data_size: Literal["tiny", "small"] = "tiny"
    categories: list[str] | Literal["all"] = Field(
        "all", description="categories to train / evaluate on (class indices follow name order)"
    )
    cache_videos: int | None = Field(
        None, ge=0, description="decoded videos kept in memory; null: all (tiny scale)"
    )
    seed: int = 0


class TrainParams(Data):
    model: str = Field(
        "tiny_vit",
        description="a config in object_states/configs/ or an "
        "open_clip model name (ViT-L-14-quickgelu)",
    )
    pretrained: str = Field(
        "",
        description="empty: random initialisation (tiny); else a "
        "checkpoint file or an open_clip tag (openai)",
    )
    hidden: int | None = Field(None, gt=0, description="head MLP width; null: the config's")

    @field_validator("model")
    @classmethod
    def _known_model(cls, name: str) -> str:
        configs = {p.stem for p in (Path(__file__).parent / "configs").glob("*.json")}
        if name in configs:
            return name
        import open_clip  # only for a name that is not one of the kit's configs

        return one_of(name, configs | set(open_clip.list_models()), "a config or open_clip model")

    train_backbone: bool = True
    single_task: bool = Field(
        False,
        description="one model per category (K = 1 heads), each "
        "trained `steps` steps on its own videos",
    )
    steps: int = Field(ge=0, description="optimizer steps (of each model when single_task)")
    batch_size: int = Field(gt=0, description="videos per step on each process")
    lr: float = Field(1e-4, gt=0, description="heads: SGD")
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(1e-3, ge=0)
    lr_backbone: float = Field(1e-5, gt=0, description="backbone: AdamW")
    weight_decay_backbone: float = Field(0.0, ge=0)
    warmup: int = Field(0, ge=0, description="linear warm-up steps, then cosine to 0")
    checkpoint_every: int = Field(100, gt=0)
    augment: bool = True
    constraint: bool = Field(
        True,
        description="pseudo-labels from the ordered s1 < a < s2 "
        "argmax; false: three independent argmaxes",
    )
    noise_weighting: bool = Field(
        True,
        description="weight videos by sigmoid((r - theta) / 0.001); false: every video weighs 1",
    )
    max_distance: int | None = Field(500, gt=0, description="D: a - s1 <= D and s2 - a <= D")
    kappa: int = Field(60, gt=0, description="distance of the action-background frames")


class EvalParams(Data):
    model: str = Field(
        description="a model folder from 01_train (one model, or one subfolder "
        "per category for single_task)"
    )
    split: Literal["test"] = Field("test", description="the annotated videos")
    videos_per_category: int = Field(0, ge=0, description="0: all")
    max_distance: int | None = Field(
        None, gt=0, description="D of the joint metrics (none in the paper's evaluation)"
    )
    tolerance: int = Field(2, ge=0, description="frames vs annotated seconds allowed to differ")


class YourVideoParams(Data):
    model: str = Field(
        description="a model folder from 01_train; a config name (tiny_vit) "
        "only with allow_untrained"
    )
    allow_untrained: bool = Field(
        False, description="accept a config name in model: an untrained model, to try out"
    )
    video: str = Field(
        "",
        description="a video file, relative to $VIDREPRO_DATA; empty: the "
        "dataset's first annotated video of `category`",
    )
    category: str = Field("", description="what the video shows; empty: the model's first")
    max_distance: int | None = Field(None, gt=0, description="D: a - s1 <= D and s2 - a <= D")


NOTEBOOKS = {"01_train": TrainParams, "02_evaluate": EvalParams, "03_your_video": YourVideoParams}
