"""Run by tests/test_training.py, alone or under torchrun: fit a linear model on a fixed
regression problem with vidrepro.training.train; each rank takes its share of every batch."""

import sys

import torch

from vidrepro.training import LoopConfig, train

torch.manual_seed(0)
X = torch.randn(64, 5, generator=torch.Generator().manual_seed(1))
Y = X @ torch.arange(1.0, 6.0) + 0.5


def batch(step, rank, world):
    rows = torch.arange(16) + (step * 16) % 64  # the same 16 rows per step whatever the world
    share = rows.chunk(world)[rank]
    return X[share], Y[share]


def loss_fn(model, b):
    x, y = b
    return ((model(x).squeeze(-1) - y) ** 2).mean(), {}


if __name__ == "__main__":
    model = torch.nn.Linear(5, 1)
    train(model, loss_fn, batch, LoopConfig(steps=20, lr=0.05, weight_decay=0.0, clip_grad=None))
    if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:
        torch.save({k: v.detach() for k, v in model.state_dict().items()}, sys.argv[1])
