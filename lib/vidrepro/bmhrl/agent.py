"""BMHRL's hierarchical agent: a segment critic, a manager that sets goals, and a worker that
writes words towards them, built around a warm-started BMT (after Wang et al., CVPR 2018,
"Video Captioning via Hierarchical Reinforcement Learning").

One caption is written in segments. At the first step, and after every word the critic marks
as the end of a segment, the manager reads the pooled encoder memory and the decoder's current
state and emits a goal (a ``goal_dim`` vector; Gaussian noise of std ``goal_std`` when
sampling), held until the next boundary. At every step the worker attends each modality's
memory (Av and Va) with the goal as the query, fuses the two contexts with a learned gate,
and adds word logits to BMT's: its output layer starts at zero, so an untrained agent writes
exactly what the warm-started BMT writes and RL starts from the supervised captioner.

The critic: BMHRL shipped its critic only as a checkpoint trained elsewhere, so the kit trains
its own from caption text alone, with labels from :func:`boundary_labels` (a clause rule).

Layouts follow ``model.greedy_decode`` / ``model.sample``: a rollout's tokens (B, T) have no
start token, include the end token, pad after it. Teacher forcing takes BMT's input layout
``[start, w1, .., wn]`` and scores ``[w1, .., wn, end]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data import END_ID, PAD_ID, START_ID, Vocab
from .model import BMT, Attention, Memory, config_from_json, config_to_json, key_padding

# Words that open a new clause or phrase: a segment ends before them. Punctuation is split off
# by ``text.wordlevel.words``, so "," and "." are words of their own.
JOINERS = (
    "and",
    "then",
    "while",
    "whilst",
    "as",
    "after",
    "before",
    "when",
    "until",
    "but",
    "because",
    ",",
    ".",
    ";",
    ":",
    "!",
    "?",
)


# ---------------------------------------------------------------------------------------------
# Segment labels and the critic.


def _is_word(
    tokens: Tensor, pad_id: int = PAD_ID, start_id: int = START_ID, end_id: int = END_ID
) -> Tensor:
    """(B, L) bool: a written word (unknown included), not pad / start / end."""
    return (tokens != pad_id) & (tokens != start_id) & (tokens != end_id)


def boundary_labels(tokens: Tensor, vocab: Vocab, words: Iterable[str] = JOINERS) -> Tensor:
    """(B, L) float: 1 where a word ends a sub-goal segment, from the caption text alone.

    The kit's definition (what its critic is trained on). Word i ends a segment when
      (a) it is the caption's last word: the next token is the end token (or padding, or
          nothing: a caption cut at max_len), or
      (b) the next word is a joiner (``words``: clause/phrase joiners such as "and", "then",
          "while", "as", "after", "before", and punctuation), word i is not itself a joiner,
          and a non-joiner word follows that joiner before the end.
    So a joiner opens the next segment (", and then he ..." stays together), and trailing
    punctuation ("... the guitar .") does not split off a segment of its own. Every caption
    has at least one boundary (its last word); the number of segments is the number of ones.
    Specials (pad, start, end) are never boundaries, so ``tokens`` may be BMT's
    ``[start, w1, .., wn, end, pad ..]`` or a rollout's ``[w1, .., end, pad ..]``.

    The original critic was trained elsewhere and only shipped as a checkpoint; this rule
    approximates "the words so far finish a clause" with what the data has.
    "a man is seen speaking to the camera while holding a brush and begins brushing her hair"
    -> 3 segments (before "while", before "and", at the end)."""
    joiner_ids = torch.tensor(
        [vocab.stoi[w] for w in words if w in vocab.stoi], dtype=tokens.dtype, device=tokens.device
    )
    word = _is_word(tokens)  # (B, L)
    join = torch.isin(tokens, joiner_ids) & word
    content = word & ~join

    def shifted(x: Tensor, k: int) -> Tensor:
        """x[:, i + k], False past the end."""
        return torch.cat([x[:, k:], torch.zeros_like(x[:, :k])], 1)

    later_content = content.flip(1).cumsum(1).flip(1) > 0  # a content word at >= i
    last = word & ~shifted(word, 1)  # (a)
    split = word & ~join & shifted(join, 1) & shifted(later_content, 2)  # (b)
    return (last | split).float()


class SegmentCritic(nn.Module):
    """The internal critic: a GRU over the words written so far -> per word, the probability
    that it ends a segment (so the manager should set a new goal before the next word).

    Causal on purpose: during a rollout it sees only the words generated so far, one at a
    time (:meth:`step`), and its batch pass (:meth:`forward`) gives the same numbers. Trained
    with :meth:`loss` on :func:`boundary_labels` of the training captions. It has its own
    embedding table, or frozen given ``embeddings`` (vocab_size, d) (e.g. GloVe)."""

    def __init__(
        self,
        vocab_size: int,
        d_embed: int = 128,
        hidden: int = 128,
        embeddings: Tensor | None = None,
        pad_id: int = PAD_ID,
        start_id: int = START_ID,
        end_id: int = END_ID,
    ):
        super().__init__()
        self.specials = (pad_id, start_id, end_id)
        if embeddings is not None:
            if embeddings.shape[0] != vocab_size:
                raise ValueError(f"embeddings have {embeddings.shape[0]} rows, vocab {vocab_size}")
            self.embedding = nn.Embedding.from_pretrained(embeddings.detach().clone(), freeze=True)
        else:
            self.embedding = nn.Embedding(vocab_size, d_embed, padding_idx=pad_id)
        self.gru = nn.GRU(self.embedding.embedding_dim, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    @classmethod
    def from_config(
        cls, cfg: AgentConfig, vocab_size: int, embeddings: Tensor | None = None
    ) -> SegmentCritic:
        return cls(vocab_size, cfg.critic_embed, cfg.critic_hidden, embeddings)

    def logits(self, tokens: Tensor) -> Tensor:
        """tokens (B, L) words (no start) -> (B, L) boundary logits."""
        out, _ = self.gru(self.embedding(tokens))  # (B, L, H)
        return self.head(out).squeeze(-1)

    def forward(self, tokens: Tensor) -> Tensor:
        """(B, L) -> (B, L) boundary probabilities."""
        return torch.sigmoid(self.logits(tokens))

    def step(self, word: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One more word (B,) -> its boundary probability (B,) and the GRU state (1, B, H)."""
        out, state = self.gru(self.embedding(word[:, None]), state)  # (B, 1, H)
        return torch.sigmoid(self.head(out[:, 0]).squeeze(-1)), state

    def is_word(self, tokens: Tensor) -> Tensor:
        return _is_word(tokens, *self.specials)

    def loss(self, tokens: Tensor, labels: Tensor, mask: Tensor | None = None) -> Tensor:
        """Binary cross-entropy per word, averaged over ``mask`` (default: the words, not
        pad / start / end)."""
        mask = self.is_word(tokens) if mask is None else mask
        bce = F.binary_cross_entropy_with_logits(
            self.logits(tokens), labels.float(), reduction="none"
        )
        return (bce * mask).sum() / mask.sum().clamp(min=1)

    def boundaries(self, tokens: Tensor, threshold: float = 0.25) -> Tensor:
        """(B, L) bool: words whose probability exceeds ``threshold`` (the paper's 0.25)."""
        return (self(tokens) > threshold) & self.is_word(tokens)


# ---------------------------------------------------------------------------------------------
# Config.


@dataclass(frozen=True)
class AgentConfig:
    """The agent's sizes on top of BMT's ``ModelConfig`` (attention widths and heads come from
    there)."""

    goal_dim: int = 64
    goal_std: float = 0.1  # Gaussian exploration noise on goals, when sampling
    manager_hidden: int = 256  # the manager's GRU state
    worker_hidden: int = 256  # the worker's goal query, attention contexts and mixing layer
    value_hidden: int = 128  # the value heads' hidden layer
    critic_embed: int = 128  # SegmentCritic.from_config: its own embedding width
    critic_hidden: int = 128  # SegmentCritic.from_config: its GRU width
    boundary_threshold: float = 0.25  # critic probability above which a segment ends
    gate_init: float = 0.5  # initial weight of the audio stream (Av) in the fusion gate

    def __post_init__(self) -> None:
        if self.goal_std <= 0:
            raise ValueError(f"goal_std must be > 0, got {self.goal_std}")
        if not 0.0 < self.boundary_threshold < 1.0:
            raise ValueError(f"boundary_threshold must be in (0, 1), got {self.boundary_threshold}")
        if not 0.0 < self.gate_init < 1.0:
            raise ValueError(f"gate_init must be in (0, 1), got {self.gate_init}")

    def to_json(self, path: str | Path | None = None) -> str:
        return config_to_json(self, path)

    @classmethod
    def from_json(cls, source: str | Path) -> AgentConfig:
        """From JSON text or a file; unknown keys are an error."""
        return config_from_json(cls, source)


# ---------------------------------------------------------------------------------------------
# The agent.


class Rollout(NamedTuple):
    """One batch of captions written by the agent. T steps, K = max segments in the batch.
    Entries past a caption's end (tokens) or its last segment (segments) are 0 (ids -1)."""

    tokens: Tensor  # (B, T) long: words, end, pad after
    logprobs: Tensor  # (B, T) worker log p of each token
    values: Tensor  # (B, T) worker baseline per token
    segment_ids: Tensor  # (B, T) long: the segment of each token, -1 on padding
    goal_logprobs: Tensor  # (B, K) log N(goal; mean, std^2) of each segment's goal
    goal_values: Tensor  # (B, K) manager baseline per segment
    goals: Tensor  # (B, K, goal_dim) the goals the worker followed (detached)
    goal_means: Tensor  # (B, K, goal_dim) the manager's means
    n_segments: Tensor  # (B,) long

    @property
    def mask(self) -> Tensor:
        """(B, T) bool: the caption's tokens, end included."""
        return self.segment_ids >= 0

    def step_goals(self) -> Tensor:
        """(B, T, goal_dim) the goal each token was written under (0 on padding): with
        :meth:`HierarchicalCaptioner.worker_forward` it re-scores the rollout in one pass."""
        index = self.segment_ids.clamp(min=0)[..., None].expand(-1, -1, self.goals.shape[-1])
        return self.goals.gather(1, index) * self.mask[..., None]


def _gaussian_logprob(sample: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(sample; mean, std^2 I), (..., G) -> (...)."""
    z = (sample - mean) / std
    return (-0.5 * z**2 - math.log(std) - 0.5 * math.log(2 * math.pi)).sum(-1)


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out))


class HierarchicalCaptioner(nn.Module):
    """A manager and a worker on top of a (warm-started) BMT, whose encoder and decoder they
    reuse: ``self.bmt`` holds the BMT weights (load its checkpoint into it) and the agent adds

    * manager: a GRUCell over segments, input [pooled memory; decoder state at the step the
      goal is set] -> goal mean (B, goal_dim);
    * worker: per step, the goal (projected) queries Av and Va with one attention each; the
      two contexts are fused by a gate sigmoid(w . goal + b) (w starts at 0, so the gate
      starts as the learned scalar ``gate_init``); [decoder state; fused] -> tanh layer ->
      residual logits added to BMT's, from a zero-initialised output layer (warm start kept
      exactly); one modality: one attention, no gate;
    * value heads: per token (worker) and per segment (manager), on detached inputs, so the
      value loss trains the heads only and never pulls the policy's features.

    The critic is passed in, not owned: it is trained apart (supervised) and only decides
    where segments end."""

    def __init__(self, bmt: BMT, cfg: AgentConfig | None = None):
        super().__init__()
        self.bmt, self.cfg = bmt, cfg or AgentConfig()
        bc, c = bmt.cfg, self.cfg
        d, g, w, m = bc.caption_width, c.goal_dim, c.worker_hidden, c.manager_hidden
        self.streams = bc.streams
        # manager
        self.manager_in = nn.Linear(sum(bc.width(s) for s in self.streams), m)
        self.manager_cell = nn.GRUCell(m + d, m)
        self.goal_mean = nn.Linear(m, g)
        # worker
        self.goal_query = nn.Linear(g, w)
        self.attend = nn.ModuleDict(
            {s: Attention(w, bc.width(s), bc.d_model, bc.heads, 0.0) for s in self.streams}
        )
        self.gate = nn.Linear(g, 1) if len(self.streams) == 2 else None
        self.mix = nn.Linear(d + w, w)
        self.out = nn.Linear(w, bc.vocab_size)
        # baselines
        self.worker_value = _mlp(d + w + g, c.value_hidden, 1)
        self.manager_value = _mlp(m, c.value_hidden, 1)
        with torch.no_grad():
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)
            if self.gate is not None:
                nn.init.zeros_(self.gate.weight)
                self.gate.bias.fill_(math.log(c.gate_init / (1 - c.gate_init)))

    def encode(
        self,
        video: Tensor | None,
        video_mask: Tensor | None,
        audio: Tensor | None,
        audio_mask: Tensor | None,
    ) -> Memory:
        """BMT's encoder; run it once per batch and pass the memory to the rest."""
        return self.bmt.encode(video, video_mask, audio, audio_mask)

    # -- pieces ---------------------------------------------------------------------------

    def _context(self, memory: Memory) -> Tensor:
        """(B, manager_hidden): the masked mean of each stream, concatenated, projected."""
        pooled = [
            (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
            for x, mask in memory.streams().values()
        ]  # (B, d_m) each
        return torch.tanh(self.manager_in(torch.cat(pooled, -1)))

    def _manager_step(
        self, context: Tensor, hidden: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor]:
        """context (B, M), decoder state (B, d), manager state (B, M) -> new state, goal mean."""
        state = self.manager_cell(torch.cat([context, hidden], -1), state)
        return state, self.goal_mean(state)

    def _worker_memory(self, memory: Memory) -> dict[str, tuple[tuple[Tensor, Tensor], Tensor]]:
        """stream -> (the worker attention's keys/values of it, its key mask): once per batch."""
        return {
            s: (self.attend[s].keys_values(x), key_padding(mask))
            for s, (x, mask) in memory.streams().items()
        }

    def _worker(
        self,
        bmt_logp: Tensor,
        hidden: Tensor,
        goals: Tensor,
        streams: dict[str, tuple[tuple[Tensor, Tensor], Tensor]],
    ) -> tuple[Tensor, Tensor]:
        """BMT log-probs (B, l, V), decoder states (B, l, d), goals (B, l, G) -> the worker's
        log-probs (B, l, V) and values (B, l)."""
        query = self.goal_query(goals)  # (B, l, W)
        ctx = [self.attend[s](query, mask=mask, kv=kv) for s, (kv, mask) in streams.items()]
        if self.gate is not None:  # "audio_video": audio (Av) first, then video (Va)
            lam = torch.sigmoid(self.gate(goals))  # (B, l, 1)
            fused = lam * ctx[0] + (1 - lam) * ctx[1]
        else:
            fused = ctx[0]  # (B, l, W)
        features = torch.cat([hidden, fused], -1)  # (B, l, d + W)
        logp = F.log_softmax(bmt_logp + self.out(torch.tanh(self.mix(features))), dim=-1)
        value = self.worker_value(torch.cat([features, goals], -1).detach()).squeeze(-1)
        return logp, value

    def goal_starts(self, tokens: Tensor, critic: SegmentCritic) -> Tensor:
        """BMT input tokens (B, L) ``[start, w1, ..]`` -> (B, L) bool, True at the steps that
        get a new goal: the first, and each after a word the critic marks as a boundary."""
        with torch.no_grad():
            ends = critic.boundaries(tokens[:, 1:], self.cfg.boundary_threshold)  # (B, L-1)
        return torch.cat([torch.ones_like(tokens[:, :1], dtype=torch.bool), ends], 1)

    def manager_means(self, memory: Memory, hidden: Tensor, starts: Tensor) -> Tensor:
        """Decoder states (B, L, d), goal starts (B, L) -> (B, L, G) the manager's mean goal
        at each step, held between starts (gradients reach the manager)."""
        context = self._context(memory)
        state = context
        mean = context.new_zeros(context.shape[0], self.cfg.goal_dim)
        means = []
        for t in range(hidden.shape[1]):
            new_state, new_mean = self._manager_step(context, hidden[:, t], state)
            new = starts[:, t, None]
            state = torch.where(new, new_state, state)
            mean = torch.where(new, new_mean, mean)
            means.append(mean)
        return torch.stack(means, 1)

    # -- teacher forcing ------------------------------------------------------------------

    def worker_forward(
        self, memory: Memory, tokens: Tensor, goals: Tensor
    ) -> tuple[Tensor, Tensor]:
        """BMT input tokens (B, L), the goal of each step (B, L, G) -> worker log-probs
        (B, L, V) of the next words and values (B, L), in one decoder pass. With a rollout's
        ``[start, tokens[:, :-1]]`` and ``step_goals()`` it gives the rollout's numbers again
        (e.g. to sample under ``no_grad`` and re-score with gradients)."""
        bmt_logp, hidden = self.bmt.decode(memory, tokens, return_hidden=True)
        return self._worker(bmt_logp, hidden, goals, self._worker_memory(memory))

    def teacher_forced(self, memory: Memory, tokens: Tensor, critic: SegmentCritic) -> Tensor:
        """Supervised warm-up of the agent: tokens (B, L) ``[start, w1, .., wn]`` -> (B, L, V)
        worker log-probs of ``[w1, .., wn, end]``, with the manager's mean goals (no noise) held
        over the critic's boundaries of the reference caption. Gradients reach the worker, the
        manager (through the goals) and BMT."""
        bmt_logp, hidden = self.bmt.decode(memory, tokens, return_hidden=True)
        goals = self.manager_means(memory, hidden, self.goal_starts(tokens, critic))
        return self._worker(bmt_logp, hidden, goals, self._worker_memory(memory))[0]

    # -- rollout --------------------------------------------------------------------------

    def rollout(
        self,
        memory: Memory,
        critic: SegmentCritic,
        max_len: int | None = None,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> Rollout:
        """Write captions step by step with BMT's KV cache (the encoder ran once: ``memory``).

        Sampling (RL): words drawn from the worker, goals = mean + N(0, goal_std^2) noise.
        ``greedy=True`` (inference): argmax words and mean goals. Gradients flow (wrap in
        ``no_grad`` for inference); goals are actions, so they reach the worker detached and
        the manager learns through ``goal_logprobs``. Stops when every caption has ended.

        A trained critic marks a caption's last word (the label rule does), so the end token
        is usually written under a goal of its own: K counts that final "stop" segment.
        Like ``model.sample``, pad and start are not masked out of the word distribution (a
        trained BMT gives them ~0 probability)."""
        bc, c = self.bmt.cfg, self.cfg
        max_len = max_len or bc.max_len
        b, device = memory.batch_size, memory.device
        cache = self.bmt.init_cache(memory)
        streams = self._worker_memory(memory)
        context = self._context(memory)  # (B, M)
        state, goal = context, context.new_zeros(b, c.goal_dim)
        word = torch.full((b,), bc.start_id, dtype=torch.long, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        n_segments = torch.zeros(b, dtype=torch.long, device=device)
        critic_state = None
        steps: dict[str, list[Tensor]] = {
            k: []
            for k in (
                "tokens",
                "logprobs",
                "values",
                "segment_ids",
                "new",
                "goals",
                "means",
                "goal_logprobs",
                "goal_values",
            )
        }
        for t in range(max_len):
            bmt_logp, hidden = self.bmt.decode(memory, word[:, None], cache, return_hidden=True)
            if t == 0:
                new = ~done
            else:  # did the word just written end a segment?
                with torch.no_grad():
                    p, critic_state = critic.step(word, critic_state)
                new = (p > c.boundary_threshold) & critic.is_word(word) & ~done
            # manager: computed for every row, kept where a segment starts
            new_state, mean = self._manager_step(context, hidden[:, 0], state)
            noise = (
                0.0
                if greedy
                else c.goal_std
                * torch.randn(mean.shape, generator=generator, device=device, dtype=mean.dtype)
            )
            new_goal = (mean + noise).detach()
            state = torch.where(new[:, None], new_state, state)
            goal = torch.where(new[:, None], new_goal, goal)
            n_segments = n_segments + new.long()
            # worker
            logp, value = self._worker(bmt_logp, hidden, goal[:, None], streams)
            logp, value = logp[:, 0], value[:, 0]  # (B, V), (B,)
            drawn = (
                logp.argmax(-1)
                if greedy
                else torch.multinomial(logp.detach().exp(), 1, generator=generator).squeeze(1)
            )
            steps["tokens"].append(drawn.masked_fill(done, bc.pad_id))
            steps["logprobs"].append(logp.gather(1, drawn[:, None]).squeeze(1).masked_fill(done, 0))
            steps["values"].append(value.masked_fill(done, 0))
            steps["segment_ids"].append((n_segments - 1).masked_fill(done, -1))
            steps["new"].append(new)
            steps["goals"].append(new_goal)
            steps["means"].append(mean)
            steps["goal_logprobs"].append(_gaussian_logprob(new_goal, mean, c.goal_std))
            steps["goal_values"].append(self.manager_value(new_state.detach()).squeeze(-1))
            word = steps["tokens"][-1]
            done = done | (word == bc.end_id)
            if done.all():
                break
        per_step = {k: torch.stack(v, 1) for k, v in steps.items()}  # (B, T, ...)
        # per segment: the values of the steps where a segment started, at (row, segment id)
        rows, ts = per_step["new"].nonzero(as_tuple=True)
        ks = per_step["segment_ids"][rows, ts]
        k = int(n_segments.max())

        def by_segment(x: Tensor) -> Tensor:  # (B, T, ...) -> (B, K, ...)
            out = x.new_zeros(b, k, *x.shape[2:])
            out[rows, ks] = x[rows, ts]
            return out

        return Rollout(
            per_step["tokens"],
            per_step["logprobs"],
            per_step["values"],
            per_step["segment_ids"],
            by_segment(per_step["goal_logprobs"]),
            by_segment(per_step["goal_values"]),
            by_segment(per_step["goals"]),
            by_segment(per_step["means"]),
            n_segments,
        )
