"""Parameters of the BLIP-2 video notebooks (``notebooks/blip2_video/``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..params import Params


class Data(Params):
    """Where the captions come from: empty roots mean the synthetic data (generated if
    missing); otherwise LAVIS-layout folders relative to ``$VIDREPRO_DATA``."""

    captions_root: str = ""
    images_root: str = ""
    data_seed: int = 0
    data_size: Literal["tiny", "small"] = "tiny"
    image_size: int = Field(64, gt=0)
    seed: int = 0


class Optim(Params):
    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    min_lr: float = 0.0
    warmup: int = 0
    weight_decay: float = 0.05
    batch_size: int = Field(gt=0)
    grad_accum: int = 1
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = 100


class PretrainParams(Data):
    model: str = Field(
        description="a tiny config name (tiny_t5, tiny_opt) or a pretrained "
        "BLIP-2 (hub id or folder), which is then only saved"
    )
    text_root: str = Field("", description="the LM's text corpus (corpus.txt); empty: synthetic")
    text_steps: int = Field(ge=0)
    text_lr: float = Field(gt=0)
    vit_steps: int = Field(0, ge=0, description="the ViT alone, contrastive on the image corpus")
    vit_lr: float = Field(1e-3, gt=0)
    image_text: bool = Field(
        True, description="False: LM without image-text pretraining (the SimVLG row)"
    )
    image_steps: int = Field(ge=0)
    image_lr: float = Field(gt=0)
    batch_size: int = Field(gt=0)


class FinetuneParams(Data, Optim):
    init: str = Field(description="model folder (the pretrain step's output) or hub id")
    num_frames: int = Field(gt=0)
    train_vit: bool = False
    lora: bool = False
    augment: bool = Field(
        False,
        description="random resized crop + flip (the paper's; it "
        "turns 'left' into 'right' on synthetic data)",
    )
    loss_clips: int = Field(
        100,
        ge=0,
        description="clips of train and of val whose captions' "
        "loss is measured before and after (0: none)",
    )


class ScstParams(Data, Optim):
    init: str
    num_frames: int = Field(gt=0)
    train_vit: bool = False
    lora: bool = False
    k: int = Field(5, ge=1, description="captions sampled per video")
    baseline: Literal["greedy", "loo", "mean"] = Field(
        "mean",
        description="mean: of the K candidates (the paper's); greedy: the greedy "
        "caption's reward (Rennie et al.); loo: mean of the other samples",
    )
    candidates: Literal["sample", "beam"] = Field(
        "beam",
        description="beam: the K best beams, length-normalised (the paper's); "
        "sample: K multinomial samples",
    )
    max_new_tokens: int = 20


class EvaluateParams(Data):
    checkpoint: str
    num_frames: int = Field(gt=0)
    split: Literal["val", "test"] = "test"
    num_beams: int = 5
    max_new_tokens: int = 32
    min_length: int = 5
    examples: int = Field(4, ge=0, description="clips shown with their captions")


class CaptionParams(Params):
    checkpoint: str = Field(
        description="a trained model folder (the model output of 02_finetune or 03_scst) or a "
        "hub id; a tiny config name (tiny_t5) only with allow_untrained"
    )
    allow_untrained: bool = Field(
        False, description="accept a config name in checkpoint: an untrained model, to try out"
    )
    video: str = Field("", description="an mp4; empty: a synthetic test clip")
    num_frames: int = Field(8, gt=0)
    image_size: int = 64
    num_beams: int = 5
    seed: int = 0


NOTEBOOKS = {
    "01_pretrain": PretrainParams,
    "02_finetune": FinetuneParams,
    "03_scst": ScstParams,
    "04_evaluate": EvaluateParams,
    "05_caption_your_video": CaptionParams,
}
