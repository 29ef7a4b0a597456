"""Run by tests/test_merlot.py with 8 fake CPU devices: three pretraining steps on a mesh of
1 device, of 8 (batch sharded), and of 8 with FSDP-sharded parameters; prints the losses."""

import sys
from functools import partial
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for test_merlot
from test_merlot import MICRO, batch  # noqa: E402

from vidrepro.merlot import models, train
from vidrepro.merlot import objectives as O

if __name__ == "__main__":
    params = jax.jit(partial(models.init_params, MICRO))(jax.random.key(0))
    tx = train.optimizer(train.OptimConfig(steps=3, lr=1e-3))
    loss = partial(train.pretrain_losses, cfg=MICRO, obj=O.Objectives(shuffle_prob=1.0))
    out = {"devices": len(jax.devices())}
    for name, devices, fsdp in (
        ("one", jax.devices()[:1], False),
        ("eight", None, False),
        ("fsdp", None, True),
    ):
        _, history = train.fit(
            train.create_state(params, tx),
            loss,
            tx,
            lambda s: batch(s, b=8),
            3,
            mesh=train.make_mesh(devices),
            fsdp=fsdp,
        )
        out[name] = [round(x, 6) for x in history.values["loss"]]
    print(" ".join(f"{k}={str(v).replace(' ', '')}" for k, v in out.items()))
