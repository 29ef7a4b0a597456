"""MERLOT training: the losses of one step, a jitted data-parallel step over a device mesh, and
a loop with checkpoints that a killed run resumes from.

One code path for every machine: the batch is sharded over the mesh's ``data`` axis and the
parameters are replicated (or, with ``fsdp``, split along their largest divisible axis), so the
same ``jax.jit`` step runs on one CPU, 8 fake CPU devices in the tests, a GPU, or a TPU slice
(after ``jax.distributed.initialize()`` on each host of a pod).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization, struct
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from .. import checkpoints
from ..history import History
from . import objectives as O
from .models import Merlot, ModelConfig, shuffled_offset


@dataclass(frozen=True)
class OptimConfig:
    steps: int
    lr: float = 3e-4
    warmup: int = 0
    weight_decay: float = 0.1
    b2: float = 0.98
    clip: float = 1.0


def optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
    """AdamW with linear warmup then linear decay to 0; no decay on biases, norms, and the
    other 1-D parameters."""
    schedule = optax.join_schedules(
        [
            optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup, 1)),
            optax.linear_schedule(cfg.lr, 0.0, max(cfg.steps - cfg.warmup, 1)),
        ],
        [max(cfg.warmup, 1)],
    )
    decay = partial(jax.tree_util.tree_map, lambda p: p.ndim > 1)
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip),
        optax.adamw(schedule, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=decay),
    )


class TrainState(struct.PyTreeNode):
    step: jax.Array
    params: dict
    opt_state: optax.OptState


def create_state(params: dict, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))


# --- the pretraining losses --------------------------------------------------------------------


def pretrain_losses(params, batch, rng, cfg: ModelConfig, obj: O.Objectives):
    """(weighted total, {loss name: value}) for one batch: frames (B, S, H, W, 3) float,
    text (B, S, L) int. Objectives with weight 0 are not computed at all."""
    model = Merlot(cfg)

    def call(method, *args):
        return model.apply({"params": params}, *args, method=method)

    frames, text = batch["frames"], batch["text"]
    b, s = text.shape[:2]
    k_mask, k_corrupt, k_shuffle = jax.random.split(rng, 3)
    tokens, cls = call(Merlot.encode_frames, frames)  # (B, S, P, D), (B, S, V)
    losses = {}
    if obj.contrastive or obj.mlm:
        text_states, received = call(Merlot.text_only, text)  # (B, S, L, D), (B, S, L)
    if obj.contrastive:
        t_emb, f_emb = call(Merlot.contrastive, text_states[:, :, 0], cls)
        losses["contrastive"] = O.contrastive_loss(t_emb, f_emb, obj.temperature)
    if obj.mlm or obj.temporal:
        masked = (
            O.choose_masked(k_mask, text, jax.lax.stop_gradient(received), obj)
            if obj.mlm
            else jnp.zeros(text.shape, bool)
        )
        inputs = O.corrupt(k_corrupt, text, masked, cfg.vocab_size)
        if obj.temporal:
            index, hidden = O.shuffle_indices(k_shuffle, b, s, shuffled_offset(cfg), obj)
        else:
            index, hidden = jnp.broadcast_to(jnp.arange(s), (b, s)), jnp.zeros((b, s), bool)
        v, t = call(Merlot.joint, tokens, index, inputs)  # (B, S, P, D), (B, S, L, D)
        if obj.mlm:
            losses["mlm"] = O.mlm_loss(call(Merlot.mlm_logits, t), text, masked)
        if obj.temporal:
            start, frame = t[:, :, 0], v[:, :, 0]  # (B, S, D) each
            other = jnp.roll(frame, 1, axis=0)  # another video's frames (B > 1)
            losses["temporal"] = O.temporal_loss(
                call(Merlot.pairs, start, frame, "text_frame"),
                call(Merlot.pairs, frame, frame, "frame_frame"),
                call(Merlot.pairs, start, other, "text_frame"),
                call(Merlot.pairs, frame, other, "frame_frame"),
                hidden,
            )
    weights = {"contrastive": obj.contrastive, "mlm": obj.mlm, "temporal": obj.temporal}
    total = sum(weights[k] * v for k, v in losses.items())
    return total, losses


def qa_losses(params, batch, rng, cfg: ModelConfig):
    """Multiple-choice QA: each answer read with the frames, the scores softmaxed over answers.
    frames (B, S, H, W, 3), text (B, A, S', L): per answer the question's segments, then the
    answer's."""
    del rng
    logits = qa_logits(params, batch, cfg)  # (B, A)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["answer"]).mean()
    accuracy = (logits.argmax(-1) == batch["answer"]).mean()
    return loss, {"qa": loss, "accuracy": accuracy}


def qa_logits(params, batch, cfg: ModelConfig):
    model = Merlot(cfg)
    frames, text = batch["frames"], batch["text"]
    b, s = frames.shape[:2]
    a = text.shape[1]
    tokens, _ = model.apply({"params": params}, frames, method=Merlot.encode_frames)
    tokens = jnp.repeat(tokens, a, axis=0)  # (B*A, S, P, D): the frames once per answer
    index = jnp.broadcast_to(jnp.arange(s), (b * a, s))
    _, t = model.apply(
        {"params": params}, tokens, index, text.reshape(b * a, *text.shape[2:]), method=Merlot.joint
    )  # t (B*A, S', L, D)
    scores = model.apply({"params": params}, t[:, -1, 0], method=Merlot.qa_score)  # answer START
    return scores.reshape(b, a).astype(jnp.float32)


# --- devices -------------------------------------------------------------------------------------


def make_mesh(devices: list | None = None) -> Mesh:
    return Mesh(np.array(devices or jax.devices()), ("data",))


def param_sharding(mesh: Mesh, tree, fsdp: bool):
    """Replicated parameters, or FSDP-style: each array split along its largest axis that the
    number of devices divides (small arrays stay replicated)."""
    n = mesh.shape["data"]

    def spec(x):
        if not fsdp or x.ndim == 0 or x.size < 4096:
            return NamedSharding(mesh, P())
        axes = sorted(range(x.ndim), key=lambda a: -x.shape[a])
        axis = next((a for a in axes if x.shape[a] % n == 0), None)
        if axis is None:
            return NamedSharding(mesh, P())
        return NamedSharding(mesh, P(*[("data" if a == axis else None) for a in range(x.ndim)]))

    return jax.tree_util.tree_map(spec, tree)


def shard_batch(mesh: Mesh, batch: dict) -> dict:
    """Put the global batch on the mesh split along its first axis. On a multi-host pod every
    host draws the same global batch (batches depend on the step only) and hands over its
    own rows."""
    sharding = NamedSharding(mesh, P("data"))
    host, hosts = jax.process_index(), jax.process_count()

    def local(x):
        x = np.asarray(x)
        rows = x.shape[0] // hosts
        return x[host * rows : (host + 1) * rows]

    return {k: jax.make_array_from_process_local_data(sharding, local(v)) for k, v in batch.items()}


def make_step(loss_fn: Callable, tx: optax.GradientTransformation, mesh: Mesh, state_sharding):
    """The jitted update: loss, gradients (averaged over the global batch by construction),
    optimizer step. The state is donated, so its memory is reused."""

    def step(state: TrainState, batch: dict, rng):
        rng = jax.random.fold_in(rng, state.step)
        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, **parts, "grad_norm": optax.tree.norm(grads)}
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

    batch_sharding = NamedSharding(mesh, P("data"))
    return jax.jit(
        step,
        in_shardings=(state_sharding, batch_sharding, None),
        out_shardings=(state_sharding, None),
        donate_argnums=0,
    )


_STEPS: dict = {}


def _cached_step(loss_fn, tx, mesh, fsdp, structure, shardings):
    """One compiled step per (loss, optimizer, mesh, layout): calling ``fit`` again (resuming,
    evaluating in stages, the tests) does not compile again."""
    key = (loss_fn, tx, mesh, fsdp, structure)
    if key not in _STEPS:
        _STEPS[key] = make_step(loss_fn, tx, mesh, shardings)
    return _STEPS[key]


# --- checkpoints and the loop --------------------------------------------------------------------

STATE_FILE = "state.msgpack"


def save_checkpoint(root: Path, state: TrainState, history: History) -> None:
    """The state, then the history, which marks a complete checkpoint, in ``root/step-<n>``;
    the two newest kept (:mod:`vidrepro.checkpoints`)."""
    folder = checkpoints.folder_for(root, int(state.step))
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_FILE + ".tmp")
    tmp.write_bytes(serialization.to_bytes(jax.device_get(state)))
    os.replace(tmp, folder / STATE_FILE)
    history.save(folder)
    checkpoints.prune(root)


def load_checkpoint(root: Path, template: TrainState) -> tuple[TrainState, History]:
    """The newest checkpoint under ``root`` that reads (the one before if one is cut short)."""

    def load(folder: Path) -> tuple[TrainState, History]:
        state = serialization.from_bytes(template, (folder / STATE_FILE).read_bytes())
        return state, History.load(folder)

    return checkpoints.load_newest(root, load)


def fit(
    state: TrainState,
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    batch_fn: Callable[[int], dict],
    steps: int,
    *,
    seed: int = 0,
    checkpoint: Path | None = None,
    checkpoint_every: int = 100,
    mesh: Mesh | None = None,
    fsdp: bool = False,
    desc: str = "train",
    evaluate: Callable[[dict], dict] | None = None,
    eval_every: int = 0,
) -> tuple[TrainState, History]:
    """``steps`` updates of ``loss_fn(params, batch_fn(step), rng)``, resuming from
    ``checkpoint`` when it holds one; batches and randomness depend only on the step number,
    so a resumed run ends where an uninterrupted one would. ``evaluate(params)`` runs every
    ``eval_every`` steps and at the end; its values go to the history as ``val_<name>``, with
    the steps in ``val_step``. TensorBoard scalars go to ``checkpoint``."""
    mesh = mesh or make_mesh()
    history = History()
    if checkpoint and checkpoints.complete(checkpoint):
        state, history = load_checkpoint(checkpoint, state)
    if checkpoint and jax.process_index() == 0:
        history.tensorboard(checkpoint, int(state.step))
    shardings = param_sharding(mesh, state, fsdp)
    # A copy: the step donates its input, which must not delete the caller's arrays.
    state = jax.device_put(jax.tree_util.tree_map(jnp.copy, state), shardings)
    step_fn = _cached_step(loss_fn, tx, mesh, fsdp, jax.tree_util.tree_structure(state), shardings)
    rng = jax.random.key(seed)
    start = int(state.step)
    bar = tqdm(
        range(start, steps), desc=desc, initial=start, total=steps, disable=jax.process_index() != 0
    )
    for step in bar:
        state, metrics = step_fn(state, shard_batch(mesh, batch_fn(step)), rng)
        metrics = jax.device_get(metrics)
        history.log(step, metrics)
        if step % 10 == 0:
            bar.set_postfix({k: f"{float(v):.3g}" for k, v in metrics.items() if k != "grad_norm"})
        last = step + 1 == steps
        if evaluate and (last or (eval_every and (step + 1) % eval_every == 0)):
            history.log_eval(step + 1, evaluate(state.params))
        if checkpoint and jax.process_index() == 0 and ((step + 1) % checkpoint_every == 0 or last):
            save_checkpoint(checkpoint, state, history)
    history.close()
    return state, history


# --- command line ----------------------------------------------------------------------------

STAGES = {"pretrain": "01_pretrain", "finetune_qa": "03_finetune_qa"}


def main(argv: list[str] | None = None) -> None:
    """The notebooks' pretraining and QA finetuning from the command line (``vidrepro.launch``);
    on a multi-host TPU pod or GPU cluster set ``VIDREPRO_MULTIHOST=1`` on every host, which
    calls ``jax.distributed.initialize()`` first. The model goes to ``OUT/model``."""
    from .. import launch
    from . import pipeline
    from .input_pipeline import Pretraining

    stage, p, out = launch.parse("merlot", STAGES, argv)
    if os.environ.get("VIDREPRO_MULTIHOST") == "1":
        jax.distributed.initialize()
    if stage == "pretrain":
        data = Pretraining.load(pipeline.roots(p)["pretrain"], p.segments, p.frame_hw)
        cfg, params, tokenizer, history = pipeline.pretrain(p, data, out / "ckpt")
    else:
        cfg, params, tokenizer, history = pipeline.finetune_qa(p, out / "ckpt")
    if jax.process_index() == 0:
        pipeline.save(out / "model", cfg, params, tokenizer, history)
        print(f"saved {out / 'model'}")


if __name__ == "__main__":
    main()
