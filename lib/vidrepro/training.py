"""One training loop for the torch papers: AdamW, warmup + cosine, accumulation, bf16,
checkpoints that resume after a kill, and DDP under ``torchrun``.

Resuming is exact because the data are a function of the step: ``batch_fn(step, rank, world)``
draws step ``s``'s examples from a generator seeded by ``(seed, s)``, so a run killed at step
1,200 and restarted from its step-1,000 checkpoint sees the same batches as one that never
stopped. Checkpoints hold the trainable parameters (safetensors) and the optimizer state
(``torch.load(weights_only=True)``), written whole before they count, the two newest kept; the
checkpoint folder also holds the run's TensorBoard curves.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from . import checkpoints
from .history import History
from .history import read as read_history

CKPT_WEIGHTS, CKPT_STATE = "trainable.safetensors", "optimizer.pt"


@dataclass
class LoopConfig:
    steps: int
    lr: float
    min_lr: float = 0.0
    warmup: int = 0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    grad_accum: int = 1
    clip_grad: float | None = 1.0
    precision: str = "fp32"  # or "bf16"
    checkpoint_every: int = 100
    log_every: int = 10


@dataclass
class Stage:
    """What a paper's ``run_<stage>(params, out)`` returns: the files later steps read (name ->
    path; empty on ranks other than 0), the metrics the stage logs, and its training curves."""

    outputs: dict[str, Path]
    metrics: dict[str, float]
    history: History


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only, none on biases and norms (and other 1-d tensors)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_at(step: int, cfg: LoopConfig) -> float:
    """Linear warmup to ``lr``, then cosine down to ``min_lr`` at ``steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(progress, 1.0)))


def step_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The generator behind step ``step``'s batch on ``rank``: resumable data order."""
    return np.random.default_rng([seed, step, rank])


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by ``torchrun``, and
    destroys it at exit (gloo's threads left running at interpreter exit can abort a rank)."""
    if "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        atexit.register(_destroy)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


class Checkpoint:
    """The trainable parameters, optimizer state and history of a run: one ``step-<n>`` folder
    per save, the two newest kept (:mod:`vidrepro.checkpoints`)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def exists(self) -> bool:
        return bool(checkpoints.complete(self.folder))

    def save(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, history: History
    ) -> None:
        folder = checkpoints.folder_for(self.folder, step)
        folder.mkdir(parents=True, exist_ok=True)
        weights = {
            n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad
        }
        for name, write in (
            (CKPT_WEIGHTS, lambda p: save_file(weights, p)),
            (CKPT_STATE, lambda p: torch.save(optimizer.state_dict(), p)),
        ):
            tmp = folder / (name + ".tmp")
            write(tmp)
            os.replace(tmp, folder / name)
        history.save(folder, step=step)  # last: it marks a complete checkpoint
        checkpoints.prune(self.folder)

    def load(
        self, model: nn.Module, optimizer: torch.optim.Optimizer | None
    ) -> tuple[int, History]:
        """The newest checkpoint that reads (the one before if a file of it is cut short)."""
        return checkpoints.load_newest(self.folder, lambda f: self._load(f, model, optimizer))

    @staticmethod
    def _load(
        folder: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None
    ) -> tuple[int, History]:
        weights = load_file(folder / CKPT_WEIGHTS)
        params = dict(model.named_parameters())
        missing = set(weights) - set(params)
        if missing:
            raise KeyError(
                f"{folder / CKPT_WEIGHTS}: parameters not in the model: {sorted(missing)[:5]}"
            )
        state = (
            torch.load(folder / CKPT_STATE, weights_only=True) if optimizer is not None else None
        )
        history, meta = read_history(folder)
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        if optimizer is not None:
            optimizer.load_state_dict(state)
        return meta["step"], history


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]],
    batch_fn: Callable[[int, int, int], Any],
    cfg: LoopConfig,
    checkpoint: str | Path | None = None,
    desc: str = "train",
) -> History:
    """Run ``cfg.steps`` optimizer steps of ``loss_fn(model, batch_fn(step, rank, world))``
    (each micro-batch ``step * grad_accum + i``), resuming from ``checkpoint`` if it holds one
    (and writing TensorBoard scalars there: every logged value, ``lr`` too). Under ``torchrun`` the model is wrapped in DistributedDataParallel and only rank 0 writes."""
    rank, world = distributed()
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas)
    ckpt = Checkpoint(checkpoint) if checkpoint else None
    start, history = ckpt.load(model, optimizer) if ckpt and ckpt.exists() else (0, History())
    if ckpt and rank == 0:
        history.tensorboard(ckpt.folder, start)
    wrapped = DistributedDataParallel(model) if world > 1 else model
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if cfg.precision == "bf16"
        else nullcontext()
    )
    params = [p for p in model.parameters() if p.requires_grad]
    bar = tqdm(
        range(start, cfg.steps), desc=desc, disable=rank != 0, initial=start, total=cfg.steps
    )
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        totals: dict[str, float] = {}
        for micro in range(cfg.grad_accum):
            sync = micro == cfg.grad_accum - 1 or world == 1
            with nullcontext() if sync else wrapped.no_sync(), autocast:
                loss, stats = loss_fn(wrapped, batch_fn(step * cfg.grad_accum + micro, rank, world))
            (loss / cfg.grad_accum).backward()
            for k, v in {"loss": loss.item(), **stats}.items():
                totals[k] = totals.get(k, 0.0) + float(v) / cfg.grad_accum
        if cfg.clip_grad:  # before the step (the BMHRL release clipped after it)
            torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        history.log(step, {**totals, "lr": lr_at(step, cfg)})
        if step % cfg.log_every == 0:
            bar.set_postfix({k: f"{v:.3g}" for k, v in totals.items()})
        if ckpt and rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            ckpt.save(model, optimizer, step + 1, history)
    history.close()
    return history
