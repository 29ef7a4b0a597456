"""BMHRL's three training stages on the kit's one loop (``vidrepro.training.train``: AdamW,
clipping before the step, checkpoints that resume, DDP under ``torchrun``):

1. warm start: BMT with label-smoothed KL and teacher forcing (the ``bmt_xe`` row);
2. the segment critic, supervised with boundary labels made from the captions
   (``agent.boundary_labels``; the release only shipped a critic checkpoint);
3. hierarchical RL: alternating worker and manager phases. The worker's loss is a policy
   gradient on per-token delta-METEOR (or delta-CIDEr-D) returns with its value head as the
   baseline; the manager's on discounted segment gains with its own value head. Each phase is
   its own resumable run (``ckpt/round<r>_<worker|manager>``).

Each objective is an ``nn.Module`` whose ``forward(batch)`` returns ``(loss, stats)``: the loop
wraps it in DistributedDataParallel, which reduces gradients only for work done in
``forward``.

    python -m vidrepro.bmhrl.train warmstart|critic|hrl [-p key=value ...] --out DIR
    torchrun --nproc_per_node 2 -m vidrepro.bmhrl.train warmstart ... --out DIR
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import torch
from torch import nn

from .. import launch
from ..text.wordlevel import words
from ..training import History, LoopConfig, distributed, train
from . import pipeline, rewards
from .agent import AgentConfig, HierarchicalCaptioner, SegmentCritic, boundary_labels
from .data import Batch, Vocab, train_sentences
from .model import BMT, label_smoothed_kl
from .params import CriticParams, HrlParams, WarmstartParams

STAGES = {"warmstart": "01_warmstart", "critic": "02_critic", "hrl": "03_hrl"}


def _inputs(batch: Batch) -> tuple:
    return batch.video, batch.video_mask, batch.audio, batch.audio_mask


class CaptionXE(nn.Module):
    """Teacher-forced label-smoothed KL of the reference captions (BMT's training)."""

    def __init__(self, model: BMT, smoothing: float):
        super().__init__()
        self.model, self.smoothing = model, smoothing

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        logp = self.model(*_inputs(batch), batch.tokens[:, :-1])  # (B, L-1, V)
        loss = label_smoothed_kl(logp, batch.tokens[:, 1:], self.model.cfg.pad_id, self.smoothing)
        return loss, {}


class CriticLoss(nn.Module):
    def __init__(self, critic: SegmentCritic, vocab: Vocab):
        super().__init__()
        self.critic, self.vocab = critic, vocab

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        words_ = batch.tokens[:, 1:]  # (B, L-1) without the start token
        labels = boundary_labels(words_, self.vocab)
        loss = self.critic.loss(words_, labels)
        with torch.no_grad():
            real = self.critic.is_word(words_)
            hits = (self.critic(words_) > 0.5) == labels.bool()
            accuracy = hits[real].float().mean()
        return loss, {"accuracy": float(accuracy)}


def _references(batch: Batch) -> list[list[str]]:
    """Each event's reference, split into words the way the vocabulary decodes."""
    return [[" ".join(words(s))] for s in batch.sentences]


class WorkerObjective(nn.Module):
    """Sample captions (no grad), reward each word by the change in the caption score it
    brings, then re-score the samples with gradients in one teacher-forced pass: a policy
    gradient with the worker's value head as the baseline (or the release's BiasedKL)."""

    def __init__(
        self,
        agent: HierarchicalCaptioner,
        critic: SegmentCritic,
        vocab: Vocab,
        scorer: rewards.Scorer,
        p: HrlParams,
    ):
        super().__init__()
        self.agent, self.critic, self.vocab, self.scorer, self.p = agent, critic, vocab, scorer, p

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        p, pad = self.p, self.agent.bmt.cfg.pad_id
        memory = self.agent.encode(*_inputs(batch))  # once: sampled from, then re-scored
        with torch.no_grad():
            out = self.agent.rollout(memory, self.critic)
        reward = rewards.token_rewards(out.tokens, self.vocab, _references(batch), self.scorer)
        mask = rewards.caption_mask(out.tokens)  # (B, T)
        start = out.tokens.new_full((len(batch), 1), self.agent.bmt.cfg.start_id)
        inputs = torch.cat([start, out.tokens[:, :-1]], 1)  # (B, T)
        logp, values = self.agent.worker_forward(memory, inputs, out.step_goals())
        chosen = logp.gather(2, out.tokens[:, :, None]).squeeze(2)  # (B, T)
        returns = rewards.discounted_returns(reward.to(chosen.device), mask, p.gamma_worker)
        policy, value_loss, stats = rewards.policy_gradient(chosen, returns, values, mask)
        if p.loss == "biased_kl":
            # The release's loss, approximated: the reference word at each position of the
            # rollout is the target, and the sampled word takes a share of it that grows with
            # its advantage. The release instead sampled from the teacher-forced prediction;
            # here both share the rollout's prefixes. Not measured yet at any scale.
            offset = rewards.reward_offset(returns - values.detach(), chosen.exp(), mask)
            target = batch.tokens[:, 1 : 1 + out.tokens.shape[1]]
            target = nn.functional.pad(
                target, (0, out.tokens.shape[1] - target.shape[1]), value=pad
            )
            policy = rewards.biased_kl(logp, target, out.tokens, offset, pad, p.smoothing)
        loss = policy + value_loss
        if p.xe_weight:
            tf = self.agent.teacher_forced(memory, batch.tokens[:, :-1], self.critic)
            loss = loss + p.xe_weight * label_smoothed_kl(tf, batch.tokens[:, 1:], pad, p.smoothing)
        score = float(reward.sum(1).mean())
        return loss, {**stats, "score": score, "value_loss": float(value_loss.detach())}


class ManagerObjective(nn.Module):
    """Sample captions with noisy goals; each goal is rewarded with the discounted gain in
    caption score over the segments it started (policy gradient on the Gaussian's mean, the
    manager's value head as the baseline)."""

    def __init__(
        self,
        agent: HierarchicalCaptioner,
        critic: SegmentCritic,
        vocab: Vocab,
        scorer: rewards.Scorer,
        p: HrlParams,
    ):
        super().__init__()
        self.agent, self.critic, self.vocab, self.scorer, self.p = agent, critic, vocab, scorer, p

    def forward(self, batch: Batch) -> tuple[torch.Tensor, dict]:
        out = self.agent.rollout(self.agent.encode(*_inputs(batch)), self.critic)
        reward = rewards.token_rewards(
            out.tokens.detach(), self.vocab, _references(batch), self.scorer
        ).to(out.goal_logprobs.device)
        k = out.goal_logprobs.shape[1]
        returns = rewards.segment_returns(reward, out.segment_ids, k, self.p.gamma_manager)
        seg_mask = torch.arange(k, device=returns.device) < out.n_segments[:, None]  # (B, K)
        policy, value_loss, stats = rewards.policy_gradient(
            out.goal_logprobs, returns, out.goal_values, seg_mask
        )
        return policy + value_loss, {
            **stats,
            "score": float(reward.sum(1).mean()),
            "segments": float(out.n_segments.float().mean()),
        }


# --- stages --------------------------------------------------------------------------------------


def _loop(steps: int, lr: float, p, warmup: int = 0, weight_decay: float = 0.0) -> LoopConfig:
    return LoopConfig(
        steps=steps,
        lr=lr,
        warmup=warmup,
        weight_decay=weight_decay,
        precision=getattr(p, "precision", "fp32"),
        checkpoint_every=p.checkpoint_every,
    )


def warmstart(p: WarmstartParams, checkpoint: Path | None) -> tuple[BMT, Vocab, History]:
    vocab = pipeline.build_vocab(p, p.min_count)
    model = pipeline.new_bmt(p, vocab).to(_device())
    ds = pipeline.dataset(p, "train", vocab, max_len=model.cfg.max_len + 1)
    history = train(
        CaptionXE(model, p.smoothing),
        lambda m, b: m(b.to(_device())),
        pipeline.batches(ds, p.batch_size, p.seed),
        _loop(p.steps, p.lr, p, p.warmup, p.weight_decay),
        checkpoint,
        "warm start",
    )
    return model.eval(), vocab, history


def train_critic(
    p: CriticParams, checkpoint: Path | None
) -> tuple[SegmentCritic, AgentConfig, Vocab, History]:
    vocab = pipeline.build_vocab(p)
    cfg = AgentConfig(boundary_threshold=p.threshold)
    torch.manual_seed(p.seed)
    critic = SegmentCritic.from_config(cfg, len(vocab)).to(_device())
    ds = pipeline.dataset(p, "train", vocab)
    history = train(
        CriticLoss(critic, vocab),
        lambda m, b: m(b.to(_device())),
        pipeline.batches(ds, p.batch_size, p.seed),
        _loop(p.steps, p.lr, p, p.warmup, p.weight_decay),
        checkpoint,
        "critic",
    )
    return critic.eval(), cfg, vocab, history


MANAGER_PARTS = ("manager_in", "manager_cell", "goal_mean", "manager_value")


def _train_only(agent: HierarchicalCaptioner, manager: bool) -> None:
    """Manager phase: the manager's modules; worker phase: everything else, BMT included,
    but the word embeddings (frozen, as BMT keeps GloVe)."""
    for name, param in agent.named_parameters():
        is_manager = name.split(".")[0] in MANAGER_PARTS
        param.requires_grad_(is_manager == manager and not name.startswith("bmt.word_embedding"))


def scorer_for(p: HrlParams, stack: ExitStack) -> rewards.Scorer:
    if p.reward == "cider":
        return rewards.CiderScorer(
            [[" ".join(words(s))] for s in train_sentences(pipeline.dense_root(p))]
        )
    return stack.enter_context(rewards.MeteorScorer())


def train_hrl(
    p: HrlParams, checkpoint: Path | None
) -> tuple[HierarchicalCaptioner, SegmentCritic, Vocab, History]:
    """Rounds of (worker phase, manager phase) from the warm-started BMT; the history's
    values carry a ``phase`` prefix (``worker/score``, ``manager/score``)."""
    bmt, vocab, _ = pipeline.load_or_new(p.init, p)
    if not isinstance(bmt, BMT):
        raise TypeError(f"init: {p.init} holds an HRL agent; start from a warm-started BMT")
    critic, cfg, critic_vocab = pipeline.load_critic(p.critic, p)
    if critic_vocab != vocab:
        raise ValueError(f"critic: {p.critic} was trained with another vocabulary than {p.init}")
    torch.manual_seed(p.seed)
    agent = HierarchicalCaptioner(bmt, AgentConfig(**{**cfg.__dict__, "goal_std": p.goal_std}))
    agent.to(_device()).train()
    critic.to(_device()).requires_grad_(False)
    ds = pipeline.dataset(p, "train", vocab, max_len=bmt.cfg.max_len + 1)
    history = History()
    with ExitStack() as stack:
        scorer = scorer_for(p, stack)
        for r in range(p.rounds):
            for phase, steps, cls in (
                ("worker", p.worker_steps, WorkerObjective),
                ("manager", p.manager_steps, ManagerObjective),
            ):
                if not steps:
                    continue
                _train_only(agent, manager=phase == "manager")
                folder = checkpoint / f"round{r}_{phase}" if checkpoint else None
                h = train(
                    cls(agent, critic, vocab, scorer, p),
                    lambda m, b: m(b.to(_device())),
                    pipeline.batches(ds, p.batch_size, p.seed + 1000 * r + (phase == "manager")),
                    _loop(steps, p.lr, p),
                    folder,
                    f"round {r + 1} {phase}",
                )
                offset = len(history.step)
                for i, step in enumerate(h.step):
                    history.log(offset + step, {f"{phase}/{k}": v[i] for k, v in h.values.items()})
    agent.requires_grad_(True)
    return agent.eval(), critic, vocab, history


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> None:
    """The notebooks' training stages from the command line (see ``vidrepro.launch``): the
    result is saved to ``OUT/model`` by rank 0, checkpoints go to ``OUT/ckpt``."""
    stage, p, out = launch.parse("bmhrl", STAGES, argv)
    rank, _ = distributed()
    if stage == "warmstart":
        model, vocab, history = warmstart(p, out / "ckpt")
        saved = lambda: pipeline.save(out / "model", model, vocab, history)
    elif stage == "critic":
        critic, cfg, vocab, history = train_critic(p, out / "ckpt")
        saved = lambda: pipeline.save_critic(out / "model", critic, cfg, vocab, history)
    else:
        agent, critic, vocab, history = train_hrl(p, out / "ckpt")
        saved = lambda: pipeline.save(out / "model", agent, vocab, history, critic)
    if rank == 0:
        print(f"saved {saved()}")


if __name__ == "__main__":
    main()
