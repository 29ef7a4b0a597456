"""BMHRL rewards: prefix texts, delta-score token rewards (CIDEr-D and batched METEOR), returns,
actor-critic losses and BiasedKL."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vidrepro.bmhrl.data import END_ID, PAD_ID, UNK_ID, Vocab
from vidrepro.bmhrl.model import label_smoothed_kl
from vidrepro.bmhrl.rewards import (
    CiderScorer,
    MeteorScorer,
    biased_kl,
    caption_mask,
    discounted_returns,
    gaussian_logprob,
    policy_gradient,
    prefix_texts,
    reward_offset,
    segment_returns,
    segments_from_ends,
    token_rewards,
)
from vidrepro.metrics.cider import CiderD

CORPUS = [
    ["a man is playing a guitar", "a man plays the guitar on stage"],
    ["a dog runs across the field", "the dog is running in the grass"],
    ["a woman is cutting vegetables", "someone chops an onion in the kitchen"],
]


@pytest.fixture(scope="module")
def vocab() -> Vocab:
    return Vocab.build(s for refs in CORPUS for s in refs)


def ids(vocab: Vocab, text: str) -> list[int]:
    return [vocab.stoi[w] for w in text.split()]


def random_captions(vocab: Vocab, b: int = 6, t: int = 9, seed: int = 0) -> torch.Tensor:
    """(b, t) sampled-caption layout: words, an end at a random place (or none), pad after."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, len(vocab), (b, t), generator=g)
    tokens[0, 2] = UNK_ID  # a special mid-caption writes no text
    for i in range(b - 1):  # the last row is cut at max_len: no end
        n = int(torch.randint(0, t, (1,), generator=g))
        tokens[i, n] = END_ID
        tokens[i, n + 1 :] = PAD_ID
    tokens[1, 0], tokens[1, 1:] = END_ID, PAD_ID  # an empty caption
    return tokens


def test_prefix_texts_and_mask(vocab):
    a = ids(vocab, "a man plays")
    tokens = torch.tensor(
        [
            [a[0], a[1], UNK_ID, a[2], END_ID, PAD_ID],
            [*ids(vocab, "dog runs"), PAD_ID, PAD_ID, PAD_ID, PAD_ID],
            [END_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID],
        ]
    )
    assert caption_mask(tokens).sum(1).tolist() == [5, 2, 1]
    assert prefix_texts(tokens, vocab) == [
        ["a", "a man", "a man", "a man plays", "a man plays"],
        ["dog", "dog runs"],
        [""],
    ]
    assert prefix_texts(tokens.numpy(), vocab) == prefix_texts(tokens, vocab)


def test_cider_token_rewards_sum_to_caption_score(vocab):
    tokens = random_captions(vocab)
    refs = [CORPUS[i % 3] for i in range(len(tokens))]
    scorer = CiderScorer(CORPUS)
    r = token_rewards(tokens, vocab, refs, scorer)  # (B, T)
    assert r.shape == tokens.shape and r.dtype == torch.float32
    mask = caption_mask(tokens)
    assert (r[~mask] == 0).all()
    full = CiderD(CORPUS).scores([vocab.decode(row) for row in tokens], refs)
    assert full.max() > 0  # the check below is not only zeros
    np.testing.assert_allclose(r.sum(1).numpy(), full, rtol=1e-5, atol=1e-6)
    # a prefix's reward is its own score's increment; the unk at (0, 2) and ends add nothing
    assert r[0, 2] == 0 and (r[tokens == END_ID] == 0).all()
    first = scorer.score([vocab.itos[int(tokens[2, 0])]], [refs[2]])[0]
    assert r[2, 0].item() == pytest.approx(first, rel=1e-5)


@pytest.mark.slow
@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="needs a java runtime")
def test_meteor_scorer_batches_one_process(vocab):
    cands = ["a man plays a guitar", "a dog", "someone cuts an onion", "", "the the the"]
    refs = [CORPUS[0], CORPUS[1], CORPUS[2], CORPUS[0], CORPUS[1]]
    with MeteorScorer() as scorer:
        proc = scorer.meteor.meteor_p
        batch = scorer.score(cands, refs)
        # pycocoevalcap, one pair per call, on the same Java process
        one_by_one = [
            scorer.meteor.compute_score({0: r}, {0: [c]})[1][0] for c, r in zip(cands, refs)
        ]
        np.testing.assert_allclose(batch, one_by_one, rtol=0, atol=1e-12)
        assert batch[0] > batch[1] > 0 and batch[3] == 0
        scorer.chunk = 2  # several SCORE chunks before the EVAL line
        np.testing.assert_allclose(scorer.score(cands[::-1], refs[::-1]), batch[::-1])
        tokens = random_captions(vocab, b=3, t=6, seed=3)
        tok_refs = CORPUS[:3]
        r = token_rewards(tokens, vocab, tok_refs, scorer)
        full = scorer.score([vocab.decode(row) for row in tokens], tok_refs)
        np.testing.assert_allclose(r.sum(1).numpy(), full, rtol=1e-5, atol=1e-6)
        assert scorer.meteor.meteor_p is proc and proc.poll() is None
    assert proc.poll() is not None
    with pytest.raises(RuntimeError, match="closed"):
        scorer.score(cands, refs)


def test_discounted_returns():
    r = torch.tensor([[1.0, 2.0, 3.0, 0.0, 5.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    g = discounted_returns(r, mask, 0.5)
    # G3 = 0, G2 = 3, G1 = 2 + 1.5, G0 = 1 + 0.5 * 3.5; the reward past the mask is ignored
    torch.testing.assert_close(g, torch.tensor([[2.75, 3.5, 3.0, 0.0, 0.0]]))
    x = torch.randn(4, 7)
    m = caption_mask(random_captions(Vocab.build(["a b c d e f"]), b=4, t=7, seed=1))
    full = torch.flip(torch.cumsum(torch.flip(x * m, [1]), 1), [1]) * m
    torch.testing.assert_close(discounted_returns(x, m, 1.0), full)
    torch.testing.assert_close(discounted_returns(x, m, 0.0), x * m)


def test_segment_returns():
    r = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 9.0, 9.0]])
    seg = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, -1, -1]])
    out = segment_returns(r, seg, 3, 0.5)
    # gains [3, 7, 5] -> R = [3 + 0.5 * 9.5, 7 + 0.5 * 5, 5]; [1, 2, 0] (pad ignored) -> [2, 2, 0]
    torch.testing.assert_close(out, torch.tensor([[7.75, 9.5, 5.0], [2.0, 2.0, 0.0]]))
    ends = torch.tensor([[False, True, False, True, True], [True, False, True, False, False]])
    ids, k = segments_from_ends(ends, seg >= 0)
    assert k == 3 and torch.equal(ids, seg)


def test_policy_gradient():
    logprobs = torch.full((2, 3), -1.0, requires_grad=True)
    values = torch.zeros(2, 3, requires_grad=True)
    returns = torch.tensor([[1.0, -1.0, 5.0], [2.0, 2.0, 2.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    policy_loss, value_loss, stats = policy_gradient(logprobs, returns, values, mask)
    policy_loss.backward()
    assert values.grad is None  # the baseline is detached from the policy loss
    g = logprobs.grad
    # gradient descent raises the logprob of positive advantages, lowers negative ones
    assert g[0, 0] < 0 and g[0, 1] > 0 and g[0, 2] == 0 and (g[1] < 0).all()
    assert stats["advantage"] == pytest.approx(1.2) and stats["return"] == pytest.approx(1.2)
    value_loss.backward()
    assert values.grad[0, 2] == 0 and values.grad[0, 0] < 0
    _, zero, _ = policy_gradient(logprobs, returns, returns.clone(), mask)
    assert zero.item() == 0.0


def test_gaussian_logprob():
    mean, std = torch.randn(3, 4, 8), torch.rand(8) + 0.5
    x = mean + std * torch.randn(3, 4, 8)
    expected = torch.distributions.Normal(mean, std).log_prob(x).sum(-1)
    torch.testing.assert_close(gaussian_logprob(x, mean, std), expected)
    torch.testing.assert_close(
        gaussian_logprob(x, mean, 0.3), torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    )


def test_biased_kl():
    g = torch.Generator().manual_seed(0)
    b, t, v, s = 3, 5, 9, 0.7
    logprobs = torch.log_softmax(torch.randn(b, t, v, generator=g), -1)
    target = torch.randint(4, v, (b, t), generator=g)
    target[0, 3:] = PAD_ID
    agent = torch.randint(4, v, (b, t), generator=g)
    offset = torch.rand(b, t, generator=g)
    plain = label_smoothed_kl(logprobs, target, PAD_ID, s)
    torch.testing.assert_close(
        biased_kl(logprobs, target, agent, torch.zeros(b, t), PAD_ID, s), plain
    )
    # agent word = reference word: plain label smoothing whatever the offset
    torch.testing.assert_close(biased_kl(logprobs, target, target, offset, PAD_ID, s), plain)
    # offset 1: the (1 - s) mass sits on the agent's word, none on the reference word
    agent[agent == target] = 4 + (target[agent == target] - 3) % (v - 4)
    q = torch.full((b, t, v), s / (v - 2))
    q.scatter_(2, target[..., None], 0.0)
    q.scatter_add_(2, agent[..., None], torch.full((b, t, 1), 1 - s))
    q[..., PAD_ID] = 0.0
    assert (q.argmax(-1) == agent).all()
    ones = torch.ones(b, t)
    keep = target != PAD_ID
    expected = (q * (q.log() - logprobs)).nan_to_num()[keep].sum() / keep.sum()
    torch.testing.assert_close(biased_kl(logprobs, target, agent, ones, PAD_ID, s), expected)
    assert biased_kl(q.clamp(min=1e-30).log(), target, agent, ones, PAD_ID, s) < 1e-5
    # offsets from rewards: positive advantages only, scaled by p and length, within [0, 1]
    mask = caption_mask(target)
    off = reward_offset(torch.randn(b, t, generator=g), torch.rand(b, t, generator=g), mask)
    assert ((off >= 0) & (off <= 1)).all() and (off[~mask] == 0).all()
