"""Parameters of the kit's own notebooks."""

from __future__ import annotations

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


NOTEBOOKS = {"00_selfcheck": SelfcheckParams}
