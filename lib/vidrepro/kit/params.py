"""Parameters of the kit's own notebooks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..params import Params


class SelfcheckParams(Params):
    video_seconds: float = Field(gt=0, description="length of the generated test clip")
    fps: int = Field(gt=0)
    frame_size: int = Field(ge=16, description="square frames, even (yuv420p)")
    num_frames: int = Field(gt=0, description="frames sampled uniformly, as LAVIS does")
    corpus_items: int = Field(gt=0, description="captions for the CIDEr agreement check")
    refs_per_item: int = Field(gt=0)
    seed: int = 0


class DataParams(Params):
    """A root left empty means the synthetic dataset (generated if missing); a relative root is
    under ``$VIDREPRO_DATA`` (default ``data/``)."""

    seed: int = 0
    size: Literal["tiny", "small"] = "tiny"
    captions_root: str = Field("", description="MSR-VTT/MSVD in LAVIS layout")
    images_root: str = Field("", description="image-caption pairs, LAVIS 'image' layout")
    pretrain_root: str = Field("", description="YT-Temporal-style videos + segments.jsonl")
    stories_root: str = Field("", description="VIST: sis/ and images/<split>/")
    dense_root: str = Field("", description="ActivityNet Captions JSON + BMT feature folders")
    states_root: str = Field("", description="ChangeIt annotations, videos under video_root/")
    qa_root: str = Field("", description="multiple-choice video QA: annotations/qa_<split>.json")


NOTEBOOKS = {"00_selfcheck": SelfcheckParams, "00_data": DataParams}
