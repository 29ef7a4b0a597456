"""Run by tests/test_blip2_train.py under torchrun: a few finetuning steps of the tiny video
BLIP-2 with DDP; each rank saves its trainable parameters to check that replicas agree."""

import sys

import torch

from vidrepro.blip2_video import pipeline, train
from vidrepro.blip2_video.params import Data
from vidrepro.training import LoopConfig

if __name__ == "__main__":
    captions, out = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)  # the same initial weights on every rank
    data = Data(captions_root=captions)
    model = pipeline.load("tiny_t5", data)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train.finetune(
        model,
        pipeline.videos(data, "train", 4, train=True),
        LoopConfig(steps=3, lr=1e-2),
        batch_size=2,
    )
    rank = torch.distributed.get_rank()
    after = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    torch.save({"before": before, "after": after}, f"{out}/rank{rank}.pt")
