"""Parameters of the BMHRL notebooks (``notebooks/bmhrl/``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..params import Params


class Data(Params):
    """An empty root means the synthetic dense videos (generated if missing); otherwise an
    ActivityNet Captions folder relative to ``$VIDREPRO_DATA`` (``train.json``, ``val_1.json``,
    ``val_2.json`` beside BMT's two feature folders)."""

    dense_root: str = ""
    data_seed: int = 0
    data_size: Literal["tiny", "small"] = "tiny"
    seed: int = 0


class Optim(Params):
    steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    warmup: int = 0
    weight_decay: float = 0.0
    batch_size: int = Field(gt=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint_every: int = 200


class WarmstartParams(Data, Optim):
    model: str = Field("tiny", description="a config in vidrepro/bmhrl/configs/")
    modalities: Literal["audio_video", "video", "audio"] = "audio_video"
    smoothing: float = Field(0.7, ge=0, lt=1, description="label smoothing of the KL loss")
    embeddings: Literal["trained", "glove", "random"] = Field(
        "trained",
        description="trained: PPMI-SVD vectors of the training captions (tiny); "
        "glove: read from glove_path (full)",
    )
    glove_path: str = Field("", description="GloVe text file, relative to $VIDREPRO_DATA")
    freeze_embeddings: bool = True
    min_count: int = Field(1, ge=1, description="words seen fewer times become <unk>")


class CriticParams(Data, Optim):
    threshold: float = Field(0.25, gt=0, lt=1, description="boundary probability cut")


class HrlParams(Data):
    init: str = Field(
        description="the warm-start model folder (01_warmstart's output), or a "
        "config name (an untrained BMT: the notebook on its own)"
    )
    critic: str = Field(
        "", description="the segment critic folder (02_critic's output); empty: an untrained critic"
    )
    reward: Literal["meteor", "cider"] = Field(
        "meteor", description="per-token delta-METEOR (the paper's) or delta-CIDEr-D"
    )
    loss: Literal["pg", "biased_kl"] = Field(
        "pg", description="policy gradient with value baselines, or the release's BiasedKL"
    )
    rounds: int = Field(ge=0, description="alternations of a worker and a manager phase")
    worker_steps: int = Field(ge=0)
    manager_steps: int = Field(ge=0)
    lr: float = Field(gt=0)
    batch_size: int = Field(gt=0)
    gamma_worker: float = Field(0.9, ge=0, le=1)
    gamma_manager: float = Field(0.9, ge=0, le=1)
    goal_std: float = Field(0.1, gt=0, description="Gaussian exploration of the goals")
    xe_weight: float = Field(
        0.0, ge=0, description="label-smoothed KL on the references added to the worker's loss"
    )
    smoothing: float = Field(0.7, ge=0, lt=1)
    checkpoint_every: int = 100


class EvalParams(Data):
    model: str = Field(
        description="a model folder (a warm-started BMT or an HRL agent), or a "
        "config name (an untrained BMT)"
    )
    beam_size: int = Field(1, ge=1, description="1: greedy (the agent decodes greedily)")
    tious: list[float] = Field(
        [0.5], min_length=1, description="densevid tIoU thresholds (BMT's GT-proposal scores: 0.5)"
    )
    examples: int = Field(2, ge=0, description="videos drawn as timelines")


NOTEBOOKS = {
    "01_warmstart": WarmstartParams,
    "02_critic": CriticParams,
    "03_hrl": HrlParams,
    "04_evaluate": EvalParams,
}
