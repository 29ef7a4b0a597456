"""BMHRL's hierarchical agent: segment labels, the critic, warm start, segment/goal bookkeeping,
rollout/teacher-forcing consistency, exploration noise and gradient flow."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vidrepro.bmhrl.agent import (
    AgentConfig,
    HierarchicalCaptioner,
    Rollout,
    SegmentCritic,
    boundary_labels,
)
from vidrepro.bmhrl.data import END_ID, PAD_ID, START_ID, Vocab, train_sentences
from vidrepro.bmhrl.model import BMT, ModelConfig, greedy_decode
from vidrepro.data.formats import activitynet
from vidrepro.data.synthetic.datasets import ensure


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on shared cores a busy neighbour
    makes OpenMP's spinning threads tens of times slower; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY_AGENT = AgentConfig(
    goal_dim=8,
    manager_hidden=16,
    worker_hidden=16,
    value_hidden=8,
    critic_embed=16,
    critic_hidden=16,
)


def tiny(modalities: str = "audio_video") -> ModelConfig:
    return ModelConfig.named("tiny", modalities=modalities, dropout=0.0)


def agent_for(
    modalities: str = "audio_video", seed: int = 0, trained: bool = False, end_bias: float = 0.0
) -> HierarchicalCaptioner:
    """A tiny agent; ``trained`` perturbs the zero-initialised worker output and the gate so
    the worker, the goals and the fusion actually change the words; ``end_bias`` raises BMT's
    end logit so captions end at different lengths."""
    torch.manual_seed(seed)
    agent = HierarchicalCaptioner(BMT(tiny(modalities)), TINY_AGENT).eval()
    with torch.no_grad():
        agent.bmt.decoder.generator.bias[END_ID] += end_bias
    if trained:
        with torch.no_grad():
            agent.out.weight.normal_(0, 1.0)
            if agent.gate is not None:
                agent.gate.weight.normal_(0, 1.0)
    return agent


def critic_for(seed: int = 0, vocab_size: int = 40) -> SegmentCritic:
    """An untrained critic whose probabilities straddle the 0.25 threshold, so rollouts have
    several segments of different lengths."""
    torch.manual_seed(seed)
    critic = SegmentCritic.from_config(TINY_AGENT, vocab_size)
    with torch.no_grad():
        critic.head.weight.mul_(4.0)
        critic.head.bias.fill_(math.log(0.25 / 0.75))
    return critic


def features(cfg: ModelConfig, lengths_v=(7, 5, 3, 6), lengths_a=(9, 4, 6, 2), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    b = len(lengths_v)
    video = torch.randn(b, max(lengths_v), cfg.d_video, generator=g)
    audio = torch.randn(b, max(lengths_a), cfg.d_audio, generator=g)
    vmask = torch.arange(video.shape[1])[None] < torch.tensor(lengths_v)[:, None]
    amask = torch.arange(audio.shape[1])[None] < torch.tensor(lengths_a)[:, None]
    video, audio = video * vmask[..., None], audio * amask[..., None]
    if cfg.modalities == "video":
        audio = amask = None
    if cfg.modalities == "audio":
        video = vmask = None
    return video, vmask, audio, amask


def memory_for(agent: HierarchicalCaptioner):
    return agent.encode(*features(agent.bmt.cfg))


def with_start(tokens: torch.Tensor) -> torch.Tensor:
    """A rollout's (B, T) tokens -> BMT's decoder input for them, ``[start, t_0 .. t_{T-2}]``."""
    start = torch.full_like(tokens[:, :1], START_ID)
    return torch.cat([start, tokens[:, :-1]], 1)


def encode_all(vocab: Vocab, sentences: list[str]) -> torch.Tensor:
    ids = [vocab.encode(s) for s in sentences]
    out = torch.full((len(ids), max(map(len, ids))), PAD_ID, dtype=torch.long)
    for i, row in enumerate(ids):
        out[i, : len(row)] = torch.tensor(row)
    return out


# ---------------------------------------------------------------------------------------------
# Segment labels and the critic.


def test_boundary_labels_hand_written():
    sentences = [
        "a man runs and jumps",
        ("a man is seen speaking to the camera while holding a brush and then brushes her hair ."),
        "a woman plays the guitar .",
        "he stands , and then he sits down",
        "a bell chimes",
    ]
    vocab = Vocab.build(sentences)
    tokens = encode_all(vocab, sentences)  # [start, words, end, pad ..]
    labels = boundary_labels(tokens, vocab)
    ends = [
        [w for w, y in zip(s.split(), row[1:].tolist()) if y] for s, row in zip(sentences, labels)
    ]
    assert ends == [
        ["runs", "jumps"],
        ["camera", "brush", "."],  # "and then" opens one segment
        ["."],  # trailing punctuation is not a segment of its own
        ["stands", "down"],  # ", and then" stays with what follows
        ["chimes"],
    ]
    assert labels[:, 0].sum() == 0  # the start token is never a boundary
    assert (labels[tokens == END_ID] == 0).all() and (labels[tokens == PAD_ID] == 0).all()
    # a rollout's layout (no start), and a caption cut at max_len (no end): last word ends it
    words_only = tokens[:, 1:]
    assert torch.equal(boundary_labels(words_only, vocab), labels[:, 1:])
    cut = tokens[:1, 1:4]  # "a man runs"
    assert boundary_labels(cut, vocab).tolist() == [[0.0, 0.0, 1.0]]
    # a custom joiner list
    custom = boundary_labels(tokens[4:], vocab, words=("bell",))  # "a | bell chimes"
    assert custom[0, :5].tolist() == [0, 1, 0, 1, 0] and custom.sum() == 2


@pytest.fixture(scope="module")
def dense_captions():
    root = ensure("dense")
    train = train_sentences(root)
    vocab = Vocab.build(train)
    val = [e.sentence for v in activitynet.read_annotations(root / "val_1.json") for e in v.events]
    return vocab, encode_all(vocab, train)[:, 1:], encode_all(vocab, val)[:, 1:]


def test_synthetic_captions_have_one_to_three_segments(dense_captions):
    vocab, train, _ = dense_captions
    n = boundary_labels(train, vocab).sum(1)
    assert ((n >= 1) & (n <= 3)).all()
    assert (n >= 2).any()  # "jumps up | and down"


def test_critic_learns_the_rule(dense_captions):
    vocab, train, val = dense_captions
    torch.manual_seed(0)
    critic = SegmentCritic(len(vocab), d_embed=32, hidden=32)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    labels = boundary_labels(train, vocab)
    for _ in range(60):
        opt.zero_grad()
        loss = critic.loss(train, labels)
        loss.backward()
        opt.step()
    critic.eval()
    with torch.no_grad():
        for tokens in (train, val):
            target = boundary_labels(tokens, vocab).bool()
            words = critic.is_word(tokens)
            predicted = critic.boundaries(tokens)  # the paper's 0.25
            accuracy = (predicted == target)[words].float().mean()
            assert accuracy > 0.9
            assert (predicted & target).sum() / target.sum() > 0.8  # finds the boundaries
        # step-by-step (as in a rollout) gives the batch pass's probabilities
        state, probs = None, []
        for t in range(val.shape[1]):
            p, state = critic.step(val[:, t], state)
            probs.append(p)
        assert torch.allclose(torch.stack(probs, 1), critic(val), atol=1e-6)


def test_critic_given_embeddings_are_frozen():
    matrix = torch.randn(40, 12)
    critic = SegmentCritic(40, hidden=8, embeddings=matrix)
    assert not critic.embedding.weight.requires_grad
    assert torch.equal(critic.embedding.weight, matrix)
    with pytest.raises(ValueError):
        SegmentCritic(41, embeddings=matrix)


def test_agent_config_json(tmp_path):
    cfg = dataclasses.replace(TINY_AGENT, goal_std=0.2)
    assert AgentConfig.from_json(cfg.to_json()) == cfg
    cfg.to_json(tmp_path / "agent.json")
    assert AgentConfig.from_json(tmp_path / "agent.json") == cfg
    assert AgentConfig() == AgentConfig(goal_dim=64, goal_std=0.1, boundary_threshold=0.25)
    with pytest.raises(ValueError, match="unknown"):
        AgentConfig.from_json('{"goal_dimm": 3}')
    with pytest.raises(ValueError):
        AgentConfig(gate_init=1.0)


# ---------------------------------------------------------------------------------------------
# The agent.


def check_rollout(r: Rollout, b: int, max_len: int, goal_dim: int) -> None:
    t = r.tokens.shape[1]
    k = int(r.n_segments.max())
    assert r.tokens.shape == r.logprobs.shape == r.values.shape == r.segment_ids.shape == (b, t)
    assert t <= max_len
    assert r.goal_logprobs.shape == r.goal_values.shape == (b, k)
    assert r.goals.shape == r.goal_means.shape == (b, k, goal_dim)
    after_end = ((r.tokens == END_ID).long().cumsum(1) - (r.tokens == END_ID).long()) > 0
    assert torch.equal(~after_end, r.mask)  # the caption up to its end, end included
    assert (r.tokens[after_end] == PAD_ID).all()
    assert (r.logprobs[after_end] == 0).all() and (r.values[after_end] == 0).all()
    assert (r.logprobs[r.mask] <= 0).all()


@pytest.mark.parametrize("modalities", ["audio_video", "video", "audio"])
def test_warm_start_is_preserved(modalities):
    """An untrained agent writes and scores exactly what its BMT does."""
    agent, critic = agent_for(modalities, end_bias=2.0), critic_for()
    memory = memory_for(agent)
    with torch.no_grad():
        r = agent.rollout(memory, critic, greedy=True)
        expected = greedy_decode(agent.bmt, memory)
        assert torch.equal(r.tokens, expected)
        check_rollout(r, 4, agent.bmt.cfg.max_len, TINY_AGENT.goal_dim)
        bmt_logp = agent.bmt.decode(memory, with_start(r.tokens))
        gathered = bmt_logp.gather(2, r.tokens[..., None]).squeeze(-1) * r.mask
        assert torch.allclose(r.logprobs, gathered, atol=1e-5)
        tf = agent.teacher_forced(memory, with_start(r.tokens), critic)
        assert torch.allclose(tf, bmt_logp, atol=1e-5)


def test_goals_change_only_at_critic_boundaries():
    agent, critic = agent_for(trained=True), critic_for()
    memory = memory_for(agent)
    with torch.no_grad():
        r = agent.rollout(memory, critic, generator=torch.Generator().manual_seed(0))
        ends = critic.boundaries(r.tokens, TINY_AGENT.boundary_threshold)  # (B, T)
    check_rollout(r, 4, agent.bmt.cfg.max_len, TINY_AGENT.goal_dim)
    starts = torch.cat([torch.ones_like(ends[:, :1]), ends[:, :-1]], 1) & r.mask
    assert torch.equal(r.segment_ids, torch.where(r.mask, starts.long().cumsum(1) - 1, -1))
    steps = r.segment_ids.diff(dim=1)[r.mask[:, 1:]]
    assert ((steps == 0) | (steps == 1)).all()  # monotone, one segment at a time
    assert torch.equal(r.n_segments, r.segment_ids.max(1).values + 1)
    assert (r.n_segments > 1).any() and (r.n_segments < r.mask.sum(1)).any()  # a real mix
    # one goal per segment, held over its tokens; nothing past the last segment
    goals = r.step_goals()
    for i in range(4):
        for k in range(int(r.n_segments[i])):
            held = goals[i][r.segment_ids[i] == k]
            assert torch.equal(held, r.goals[i, k].expand_as(held))
        past = torch.arange(r.goals.shape[1]) >= r.n_segments[i]
        assert (r.goals[i, past] == 0).all() and (r.goal_logprobs[i, past] == 0).all()
    several = r.n_segments > 1
    assert not torch.isclose(r.goals[several, 0], r.goals[several, 1]).all(-1).any()


def test_rollout_matches_teacher_forcing():
    """Re-scoring a rollout in one teacher-forced pass with its goals gives its log-probs and
    values; ``teacher_forced`` holds the manager's mean goals over the same segments as the
    rollout; greedy rollouts match ``teacher_forced`` exactly."""
    agent, critic = agent_for(trained=True, end_bias=4.0), critic_for()
    memory = memory_for(agent)
    with torch.no_grad():
        r = agent.rollout(memory, critic, generator=torch.Generator().manual_seed(1))
    check_rollout(r, 4, agent.bmt.cfg.max_len, TINY_AGENT.goal_dim)
    lengths = r.mask.sum(1)
    assert (lengths < r.tokens.shape[1]).any() and len(set(lengths.tolist())) > 1
    with torch.no_grad():
        logp, values = agent.worker_forward(memory, with_start(r.tokens), r.step_goals())
        rescored = logp.gather(2, r.tokens[..., None]).squeeze(-1)
        assert torch.allclose(rescored[r.mask], r.logprobs[r.mask], atol=1e-5)
        assert torch.allclose(values[r.mask], r.values[r.mask], atol=1e-5)
        assert (r.n_segments > 1).any()
        # teacher forcing on the rollout's words: its goals are the rollout's means
        tf = agent.teacher_forced(memory, with_start(r.tokens), critic)
        means = Rollout(*r[:6], r.goal_means, r.goal_means, r.n_segments).step_goals()
        expected, _ = agent.worker_forward(memory, with_start(r.tokens), means)
        assert torch.allclose(tf[r.mask], expected[r.mask], atol=1e-5)
        # the goals matter: the same tokens under other goals score differently
        other, _ = agent.worker_forward(memory, with_start(r.tokens), r.step_goals().flip(0))
        assert not torch.allclose(
            other.gather(2, r.tokens[..., None]).squeeze(-1)[r.mask], r.logprobs[r.mask], atol=1e-3
        )

        g = agent.rollout(memory, critic, greedy=True)
        check_rollout(g, 4, agent.bmt.cfg.max_len, TINY_AGENT.goal_dim)
        tf = agent.teacher_forced(memory, with_start(g.tokens), critic)
        assert torch.allclose(
            tf.gather(2, g.tokens[..., None]).squeeze(-1)[g.mask], g.logprobs[g.mask], atol=1e-5
        )
        assert torch.equal(tf.argmax(-1)[g.mask], g.tokens[g.mask])


def test_goal_noise_only_when_sampling():
    agent, critic = agent_for(trained=True), critic_for()
    memory = memory_for(agent)
    std, dim = TINY_AGENT.goal_std, TINY_AGENT.goal_dim
    at_mean = -dim * (math.log(std) + 0.5 * math.log(2 * math.pi))
    with torch.no_grad():
        runs = [
            agent.rollout(memory, critic, greedy=True, generator=torch.Generator().manual_seed(s))
            for s in (0, 1)
        ]
        sampled = [
            agent.rollout(memory, critic, generator=torch.Generator().manual_seed(s))
            for s in (0, 1)
        ]
    for r in runs:
        real = torch.arange(r.goals.shape[1])[None] < r.n_segments[:, None]  # (B, K)
        assert torch.equal(r.goals, r.goal_means)
        assert torch.allclose(
            r.goal_logprobs[real], torch.full_like(r.goal_logprobs[real], at_mean)
        )
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    for r in sampled:
        real = torch.arange(r.goals.shape[1])[None] < r.n_segments[:, None]
        noise = (r.goals - r.goal_means)[real]  # (N, G)
        assert 0.5 * std < noise.std() < 1.5 * std
        assert (r.goal_logprobs[real] < at_mean).all()
    assert not torch.equal(sampled[0].tokens, sampled[1].tokens) or not torch.equal(
        sampled[0].goals, sampled[1].goals
    )


@pytest.mark.parametrize("modalities", ["video", "audio"])
def test_single_modality(modalities):
    agent, critic = agent_for(modalities, trained=True), critic_for()
    assert agent.gate is None and list(agent.attend) == [modalities]
    memory = memory_for(agent)
    r = agent.rollout(memory, critic, max_len=6, generator=torch.Generator().manual_seed(0))
    check_rollout(r, 4, 6, TINY_AGENT.goal_dim)
    tf = agent.teacher_forced(memory, with_start(r.tokens), critic)
    assert tf.shape == (*r.tokens.shape, agent.bmt.cfg.vocab_size)
    assert torch.allclose(tf.exp().sum(-1), torch.ones(r.tokens.shape), atol=1e-5)


def test_bimodal_gate_starts_at_gate_init():
    agent = agent_for()
    goals = torch.randn(3, 5, TINY_AGENT.goal_dim)
    assert torch.allclose(torch.sigmoid(agent.gate(goals)), torch.full((3, 5, 1), 0.5))
    assert list(agent.attend) == ["audio", "video"]


def test_encoder_runs_once_and_decoder_steps_one_token():
    agent, critic = agent_for(trained=True), critic_for()
    encoder_calls, step_widths = [], []
    agent.bmt.encoder.register_forward_hook(lambda *_: encoder_calls.append(1))
    agent.bmt.decoder.layers[0].register_forward_pre_hook(
        lambda _, args: step_widths.append(args[0].shape[1])
    )
    with torch.no_grad():
        r = agent.rollout(memory_for(agent), critic, generator=torch.Generator().manual_seed(0))
    assert len(encoder_calls) == 1
    assert step_widths == [1] * r.tokens.shape[1]  # cached: one new token per step


def test_gradients_reach_worker_manager_and_value_heads():
    agent, critic = agent_for(trained=True), critic_for()
    agent.train()
    memory = memory_for(agent)
    r = agent.rollout(memory, critic, generator=torch.Generator().manual_seed(0))
    seg_mask = torch.arange(r.goals.shape[1])[None] < r.n_segments[:, None]
    policy = -(r.logprobs.sum() + (r.goal_logprobs * seg_mask).sum())
    value = (r.values - 1).pow(2).sum() + (r.goal_values - 1).pow(2).sum()
    (policy + value).backward()

    def reached(module: torch.nn.Module) -> bool:
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    for name in (
        "out",
        "mix",
        "goal_query",
        "attend",
        "gate",  # worker
        "manager_cell",
        "goal_mean",
        "manager_in",  # manager, via goal_logprobs
        "worker_value",
        "manager_value",
    ):  # baselines
        assert reached(getattr(agent, name)), name
    assert reached(agent.bmt.decoder) and reached(agent.bmt.encoder)
    assert all(p.grad is None for p in critic.parameters())  # the critic only decides


def test_value_heads_do_not_train_the_policy():
    agent, critic = agent_for(trained=True), critic_for()
    memory = memory_for(agent)
    r = agent.rollout(memory, critic, generator=torch.Generator().manual_seed(0))
    (r.values.sum() + r.goal_values.sum()).backward()
    assert all(p.grad is None for p in agent.bmt.parameters())
    assert agent.mix.weight.grad is None and agent.manager_cell.weight_hh.grad is None
    assert agent.worker_value[0].weight.grad is not None


def test_teacher_forced_trains_worker_and_manager():
    agent, critic = agent_for(trained=True), critic_for()
    memory = memory_for(agent)
    tokens = torch.randint(4, 40, (4, 7), generator=torch.Generator().manual_seed(3))
    tokens[:, 0] = START_ID
    logp = agent.teacher_forced(memory, tokens, critic)
    assert logp.shape == (4, 7, 40)
    target = torch.cat([tokens[:, 1:], torch.full_like(tokens[:, :1], END_ID)], 1)
    (-logp.gather(2, target[..., None]).mean()).backward()
    assert agent.out.weight.grad.abs().sum() > 0
    assert agent.goal_mean.weight.grad.abs().sum() > 0  # goals are means: differentiable
    starts = agent.goal_starts(tokens, critic)
    assert starts[:, 0].all() and (starts[:, 1:] == critic.boundaries(tokens[:, 1:])).all()
