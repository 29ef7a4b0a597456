"""The shared torch training loop: schedule, decay groups, exact resume, DDP on 2 processes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from twoprocs import torchrun

from vidrepro import checkpoints, training
from vidrepro.checkpoints import CheckpointError
from vidrepro.training import LoopConfig


def test_warmup_then_cosine_to_min_lr():
    cfg = LoopConfig(steps=100, lr=1.0, min_lr=0.1, warmup=10)
    assert training.lr_at(0, cfg) == pytest.approx(0.1)
    assert training.lr_at(9, cfg) == pytest.approx(1.0)
    assert training.lr_at(55, cfg) == pytest.approx(0.55)
    assert training.lr_at(100, cfg) == pytest.approx(0.1)
    assert training.lr_at(30, cfg) > training.lr_at(60, cfg)


def test_no_weight_decay_on_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    decay, no_decay = training.param_groups(model, 0.05)
    assert [p.shape for p in decay["params"]] == [(4, 3)]
    assert len(no_decay["params"]) == 3 and no_decay["weight_decay"] == 0.0


def _fit(kill_after, folder):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    data = torch.randn(32, 4, generator=torch.Generator().manual_seed(3))

    def batch(step, rank, world):
        rng = training.step_rng(0, step, rank)
        return data[torch.as_tensor(rng.integers(32, size=8))]

    calls = 0

    def loss_fn(m, x):
        nonlocal calls
        calls += 1
        if kill_after is not None and calls > kill_after:
            raise KeyboardInterrupt  # the kill
        return (m(x) - x.sum(1, keepdim=True)).pow(2).mean(), {"x": 1.0}

    cfg = LoopConfig(steps=12, lr=0.01, warmup=2, checkpoint_every=4)
    history = training.train(model, loss_fn, batch, cfg, checkpoint=folder)
    return model, history


def test_resume_after_a_kill_is_exact(tmp_path):
    straight, h = _fit(None, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(10, tmp_path / "b")  # killed during step 10; last checkpoint after step 8
    assert training.Checkpoint(tmp_path / "b").exists()
    resumed, h2 = _fit(None, tmp_path / "b")
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    assert h2.step == list(range(12)) and h2.values["loss"] == pytest.approx(h.values["loss"])


def test_curves_go_to_tensorboard_once_per_step_across_a_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, h = _fit(None, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(10, tmp_path / "b")
    _fit(None, tmp_path / "b")
    for folder in ("a", "b"):
        board = EventAccumulator(str(tmp_path / folder))
        board.Reload()
        assert set(board.Tags()["scalars"]) == {"loss", "x", "lr"}
        loss = board.Scalars("loss")
        assert [e.step for e in loss] == list(range(12))  # resumed at 8: no step twice
        assert [e.value for e in loss] == pytest.approx(h.values["loss"])


def test_checkpoint_names_unknown_parameters(tmp_path):
    _fit(None, tmp_path / "c")
    other = torch.nn.Linear(4, 1)
    with (
        pytest.warns(UserWarning, match="trying the one before"),
        pytest.raises(CheckpointError, match="trainable.safetensors: parameters not in the model"),
    ):
        training.Checkpoint(tmp_path / "c").load(other, None)


def test_a_cut_short_checkpoint_falls_back_to_the_one_before(tmp_path):
    """Two checkpoints are kept; a truncated file in the newest is named and the resume starts
    from the one before, ending where an uninterrupted run ends."""
    straight, _ = _fit(None, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _fit(10, tmp_path / "b")  # checkpoints after steps 4 and 8; killed in step 10
    kept = checkpoints.complete(tmp_path / "b")
    assert [d.name for d in kept] == ["step-000000008", "step-000000004"]
    weights = kept[0] / training.CKPT_WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])  # a kill or a full disk mid-write
    with pytest.warns(UserWarning, match=rf"{kept[0]}.*trying the one before"):
        resumed, history = _fit(None, tmp_path / "b")
    assert history.step == list(range(12))
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for d in checkpoints.complete(tmp_path / "b"):
        (d / training.CKPT_STATE).write_bytes(b"")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no checkpoint under"):
        _fit(None, tmp_path / "b")


@pytest.mark.slow
def test_ddp_on_two_processes_matches_one(tmp_path):
    script = Path(__file__).parent / "helpers" / "ddp_train_script.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], check=True, env=env)
    torchrun(script, tmp_path / "two.pt")
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-5), k
