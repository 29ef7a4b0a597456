"""SCST on a toy policy: gradients flow, advantages have the right sign, reward rises."""

import numpy as np
import pytest
import torch
from torch import nn

from vidrepro.metrics.cider import CiderD
from vidrepro.rl import scst

VOCAB = ["<pad>", "</s>", "a", "red", "blue", "circle", "square", "grows", "shrinks", "then"]
REFS = [
    ["a red circle grows", "a red circle grows then shrinks"],
    ["a blue square shrinks", "a blue square shrinks then grows"],
]


class ToyPolicy(nn.Module):
    """Independent categorical tokens per (video, position); 'frames' are video indices."""

    def __init__(self, videos: int = 2, length: int = 5):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(videos, length, len(VOCAB)))

    def visual_prefix(self, frames):
        return self.logits[frames]  # (B, L, V)

    def forward(self, frames, targets, repeat=1):
        return self.token_logprobs(self.visual_prefix(frames).repeat_interleave(repeat, 0), targets)

    def generate(self, frames=None, prefix=None, do_sample=False, num_return_sequences=1, **_):
        probs = torch.softmax(prefix, -1).repeat_interleave(num_return_sequences, 0)
        if do_sample:
            return torch.distributions.Categorical(probs=probs).sample()
        return probs.argmax(-1)

    def clean_generated(self, ids):
        is_eos = (ids == 1).int()
        return ids.masked_fill((is_eos.cumsum(1) - is_eos) > 0, 0)

    def token_logprobs(self, prefix, targets):
        logp = torch.log_softmax(prefix, -1).gather(-1, targets.unsqueeze(-1))[..., 0]
        return logp * (targets != 0)

    def decode(self, ids):
        return [" ".join(VOCAB[i] for i in row if i > 1) for row in ids.tolist()]


def test_normalize_drops_case_and_punctuation():
    assert (
        scst.normalize("A red circle grows, then... it MOVES left!")
        == "a red circle grows then it moves left"
    )


def test_leave_one_out_baseline():
    r = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    assert np.allclose(scst.leave_one_out(r), [[2.5, 2.0, 1.5], [3.0, 3.0, 0.0]])


def test_gradient_is_nonzero_and_pushes_better_samples_up():
    torch.manual_seed(0)
    policy = ToyPolicy()
    sc = scst.SelfCritical(CiderD(REFS), k=8, baseline="loo")
    loss, stats = sc.step(policy, torch.tensor([0, 1]), REFS)
    loss.backward()
    assert policy.logits.grad.abs().sum() > 0
    # One sample above its baseline, one below: a gradient step raises the first's log-prob.
    prefix = policy.logits[torch.tensor([0, 0])]
    good, bad = torch.tensor([[2, 3, 5, 7, 1]]), torch.tensor([[4, 6, 8, 9, 1]])
    targets = torch.cat([good, bad])
    policy.zero_grad()
    scst.policy_gradient_loss(
        policy.token_logprobs(prefix, targets), torch.tensor([1.0, -1.0])
    ).backward()
    with torch.no_grad():
        before = policy.token_logprobs(prefix, targets).sum(1)
        policy.logits -= 0.5 * policy.logits.grad
        after = policy.token_logprobs(policy.logits[torch.tensor([0, 0])], targets).sum(1)
    assert after[0] > before[0] and after[1] < before[1]


@pytest.mark.parametrize("baseline", ["greedy", "loo", "mean"])
def test_toy_policy_expected_reward_rises(baseline):
    torch.manual_seed(1)
    policy = ToyPolicy()
    sc = scst.SelfCritical(CiderD(REFS), k=8, baseline=baseline)
    opt = torch.optim.Adam(policy.parameters(), lr=0.1)
    rewards = []
    for _ in range(60):
        loss, stats = sc.step(policy, torch.tensor([0, 1]), REFS)
        opt.zero_grad()
        loss.backward()
        opt.step()
        rewards.append(stats.reward)
    assert np.mean(rewards[-10:]) > np.mean(rewards[:10]) + 1.0, rewards


def test_beam_variant_needs_k_candidates_and_loo_needs_two():
    with pytest.raises(ValueError, match="k >= 2"):
        scst.SelfCritical(CiderD(REFS), k=1, baseline="loo")
