"""Parameters of the MERLOT notebooks (``notebooks/merlot/``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ..params import Params, one_of


class Data(Params):
    """Empty roots mean the synthetic data (generated if missing); otherwise folders relative
    to ``$VIDREPRO_DATA`` in the layouts of ``vidrepro.data.formats``."""

    pretrain_root: str = ""
    stories_root: str = ""
    qa_root: str = ""
    tokenizer: str = Field(
        "",
        description="empty: a word-level vocabulary built from the data "
        "(tiny scale); else a local tokenizer.json file or saved tokenizer "
        "folder, relative to $VIDREPRO_DATA or absolute (full scale: "
        "RoBERTa's BPE, as the paper), renumbered so the model's special "
        "ids (pad 0, mask 3, start 4) come first",
    )
    data_seed: int = 0
    data_size: Literal["tiny", "small"] = "tiny"
    image_size: int | list[int] = Field(
        64,
        description="frame size in pixels: one int for "
        "square frames, or [height, width] (the paper: "
        "[192, 352])",
    )
    seed: int = 0

    @field_validator("image_size")
    @classmethod
    def _hw(cls, v: int | list[int]) -> int | list[int]:
        sizes = [v] if isinstance(v, int) else v
        if len(sizes) not in (1, 2) or min(sizes) < 1:
            raise ValueError(f"image_size must be a positive int or [height, width], got {v}")
        return v

    @property
    def frame_hw(self) -> tuple[int, int]:
        """(height, width) of the frames the model reads."""
        v = self.image_size
        return (v, v) if isinstance(v, int) else (v[0], v[-1])


class Optim(Params):
    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    warmup: int = 0
    weight_decay: float = 0.1
    batch_size: int = Field(gt=0)
    checkpoint_every: int = 100
    fsdp: bool = Field(False, description="shard parameters over the devices (else replicate)")


class PretrainParams(Data, Optim):
    model: str = Field("tiny", description="a config in vidrepro/merlot/configs/")
    precision: Literal["fp32", "bf16"] = "fp32"

    @field_validator("model")
    @classmethod
    def _known_config(cls, name: str) -> str:
        configs = (p.stem for p in (Path(__file__).parent / "configs").glob("*.json"))
        return one_of(name, configs, "a MERLOT config in vidrepro/merlot/configs/")

    segments: int = Field(
        5, ge=2, description="segments per example (the paper: 4; stories have 5)"
    )
    contrastive_weight: float = Field(0.25, ge=0)
    mlm_weight: float = Field(1.0, ge=0)
    temporal_weight: float = Field(1.0, ge=0)
    temperature: float = Field(0.05, gt=0)
    mask_rate: float = Field(0.2, gt=0, lt=1)
    shuffle_prob: float = Field(0.4, ge=0, le=1)
    shuffle_counts: list[int] = Field([2, 3, 4], min_length=1)


class StoryParams(Data):
    checkpoint: str = Field(
        description="a pretrained model folder, or a config name (random "
        "weights: what ordering looks like untrained)"
    )
    method: Literal["merlot", "contrastive", "random"] = "merlot"
    split: Literal["val", "test"] = "test"
    assignments: int = Field(2, ge=1, description="random index assignments averaged")
    examples: int = Field(3, ge=0, description="stories shown with both orders")


class FinetuneParams(Data, Optim):
    init: str = Field(
        description="a pretrained model folder, or a config name to start from "
        "random weights (the scratch row)"
    )
    segments: int = Field(5, gt=0, description="frames per QA video (one per step)")
    segment_seconds: float = Field(2.0, gt=0)
    question_segments: int = Field(
        2, gt=0, description="text segments (the config's text_len tokens each) the question fills"
    )
    eval_every: int = Field(50, gt=0)


NOTEBOOKS = {
    "01_pretrain": PretrainParams,
    "02_story_ordering": StoryParams,
    "03_finetune_qa": FinetuneParams,
}
