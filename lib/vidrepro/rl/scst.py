"""Self-critical sequence training (Rennie et al. 2017), shared by the captioning papers.

One step: sample K captions per video, score them with CIDEr-D against the video's references
(document frequencies from the training corpus, computed once), subtract a baseline, and push up
the log-probability of captions that beat it: loss = -sum_t log p(w_t) * (r - b), masked.

Two things the BLIP-2 video paper's released code got wrong are done right here: the
log-probabilities come from a teacher-forced pass *with* gradients (``generate`` runs under
``no_grad``, so the released loss could not train), and captions are tokenised in Python once
(the release started the Java PTB tokenizer twice per step). The paper's own variant (beam
candidates, mean-of-beams baseline, length-normalised log-probability) is ``candidates="beam"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from ..metrics.cider import CiderD


def normalize(caption: str) -> str:
    """Lower-case words without punctuation: how references and samples are compared."""
    return " ".join(re.findall(r"[a-z0-9]+", caption.lower()))


class CaptionPolicy(Protocol):
    """What SCST needs from a captioning model (``VideoBlip2`` is one). ``__call__`` gives the
    teacher-forced log-probabilities with gradients, so a DDP wrapper can stand in for it."""

    def __call__(self, frames, targets: torch.Tensor, repeat: int = 1) -> torch.Tensor: ...
    def visual_prefix(self, frames) -> torch.Tensor: ...
    def generate(self, frames=None, prefix=None, **kwargs) -> torch.Tensor: ...
    def decode(self, ids: torch.Tensor) -> list[str]: ...
    def clean_generated(self, ids: torch.Tensor) -> torch.Tensor: ...


def leave_one_out(rewards: np.ndarray) -> np.ndarray:
    """(B, K) rewards -> (B, K) baselines: the mean of the other K-1 samples of the video."""
    k = rewards.shape[1]
    return (rewards.sum(1, keepdims=True) - rewards) / (k - 1)


def policy_gradient_loss(
    logprobs: torch.Tensor, advantage: torch.Tensor, length_normalise: bool = False
) -> torch.Tensor:
    """logprobs (N, L) (0 at padding), advantage (N,) -> scalar loss.

    Summed over tokens and averaged over sequences (self-critical.pytorch), or with
    ``length_normalise`` each sequence's mean token log-probability (the paper's code)."""
    seq = logprobs.sum(1)  # (N,)
    if length_normalise:
        seq = seq / (logprobs != 0).sum(1).clamp(min=1)
    return -(seq * advantage.to(seq)).mean()


@dataclass
class ScstStats:
    loss: float
    reward: float  # mean reward of the sampled captions
    baseline: float
    samples: list[str]


class SelfCritical:
    """SCST with CIDEr-D rewards.

    candidates: ``"sample"`` (K multinomial samples, the standard recipe) or ``"beam"`` (the K
    best beams, the paper's code). baseline: ``"greedy"`` (reward of the greedy caption),
    ``"loo"`` (mean of the other samples) or ``"mean"`` (mean of all K, the paper's code).
    """

    def __init__(
        self,
        scorer: CiderD,
        k: int = 5,
        baseline: Literal["greedy", "loo", "mean"] = "greedy",
        candidates: Literal["sample", "beam"] = "sample",
        max_new_tokens: int = 32,
        temperature: float = 1.0,
    ):
        if baseline == "loo" and k < 2:
            raise ValueError("a leave-one-out baseline needs k >= 2")
        self.scorer, self.k, self.baseline, self.candidates = scorer, k, baseline, candidates
        self.max_new_tokens, self.temperature = max_new_tokens, temperature

    def rewards(self, captions: list[str], refs: list[list[str]]) -> np.ndarray:
        """CIDEr-D of each caption against its reference list (both normalised)."""
        return self.scorer.scores(
            [normalize(c) for c in captions], [[normalize(r) for r in rs] for rs in refs]
        )

    def step(
        self, policy: CaptionPolicy, frames: torch.Tensor, refs: list[list[str]]
    ) -> tuple[torch.Tensor, ScstStats]:
        """The loss for one batch: frames (B, T, 3, H, W), refs one list per video."""
        b, k = len(refs), self.k
        core = getattr(policy, "module", policy)  # generation bypasses a DDP wrapper
        with torch.no_grad():
            prefix = core.visual_prefix(frames)  # (B, Q, D)
        if self.candidates == "sample":
            ids = core.generate(
                prefix=prefix,
                do_sample=True,
                num_return_sequences=k,
                temperature=self.temperature,
                max_new_tokens=self.max_new_tokens,
            )
        else:
            ids = core.generate(
                prefix=prefix,
                num_beams=k,
                num_return_sequences=k,
                max_new_tokens=self.max_new_tokens,
            )
        targets = core.clean_generated(ids)  # (B·K, L)
        samples = core.decode(targets)
        refs_k = [r for r in refs for _ in range(k)]
        reward = self.rewards(samples, refs_k).reshape(b, k)  # (B, K)
        if self.baseline == "greedy":
            greedy = core.decode(
                core.generate(prefix=prefix, num_beams=1, max_new_tokens=self.max_new_tokens)
            )
            base = np.repeat(self.rewards(greedy, refs)[:, None], k, 1)
        elif self.baseline == "loo":
            base = leave_one_out(reward)
        else:
            base = np.repeat(reward.mean(1, keepdims=True), k, 1)
        advantage = torch.as_tensor(
            (reward - base).reshape(-1), dtype=torch.float32, device=targets.device
        )
        logprobs = policy(frames, targets, repeat=k)  # (B·K, L), with gradients
        loss = policy_gradient_loss(logprobs, advantage, length_normalise=self.candidates == "beam")
        return loss, ScstStats(loss.item(), float(reward.mean()), float(base.mean()), samples)
