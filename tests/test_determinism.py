"""Same seed, same numbers: the synthetic data, each paper's training stage and a notebook step
executed by the runner give bit-identical results when repeated with the same seed, and the
thread settings that decide a float sum's rounding are chosen in one place.

Each training test runs a tiny stage twice in this process from the same seed, resetting the
seeds the way the stage's command line does (``launch.parse`` calls ``determinism.configure()``
without a seed; the stage then seeds what it uses), and compares every trained tensor with
``torch.equal`` / ``np.array_equal`` and every logged value with ``==``. A third run with another
seed (where it is cheap) shows that the seed reaches the stage, so the comparison is not between
two things that could not differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from demo_project import notebook

from vidrepro import determinism, runs
from vidrepro import params as P
from vidrepro.data.synthetic import datasets

# Every kind small enough to build three times in a few seconds (test_synthetic's SMALL, fewer
# items; qa's tiny default has hundreds of videos).
SIZE = replace(
    datasets.SIZES["tiny"],
    clips=(2, 1, 1),
    refs=3,
    images=3,
    sentences=10,
    pretrain_videos=2,
    segments=4,
    stories=(1, 1, 1),
    dense=(1, 1),
    state_videos=(2, 1),
    state_categories=2,
    qa=(1, 1, 1),
)
MEDIA = {".mp4", ".jpg", ".txt"}  # what each seed must change (.txt: the text corpus)


def digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def pinned(monkeypatch):
    """One intra-op thread for ``determinism.configure`` (the property holds for any fixed
    count; on a shared 2-core machine two spinning OpenMP threads made the HRL rollouts' many
    small ops 2-25 times slower), and torch's process-wide settings put back afterwards so the
    rest of a test session runs as it would have."""
    monkeypatch.setenv(determinism.THREADS_ENV, "1")
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"{len(differ)} of {len(a)} tensors differ between the runs: {differ[:5]}"


def assert_moved(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    """Training changed the weights (else the comparison of two runs proves nothing)."""
    assert any(not torch.equal(before[k], after[k]) for k in before)


# --- 1. data -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", datasets.KINDS)
def test_synthetic_data_is_byte_identical_for_a_seed(kind, tmp_path):
    """Two builds with one seed: the same files, byte for byte (videos included: an encoder
    whose output depends on anything but its input frames breaks this); another seed changes
    every video and image."""
    a = digests(datasets.build(kind, tmp_path / "a", seed=3, size=SIZE))
    b = digests(datasets.build(kind, tmp_path / "b", seed=3, size=SIZE))
    assert a.keys() == b.keys()
    differ = sorted(k for k in a if a[k] != b[k])
    assert not differ, f"{kind}: same seed, different bytes in {differ}"
    media = [k for k in a if Path(k).suffix in MEDIA]
    assert media, f"{kind} wrote no video, image or text corpus"

    c = digests(datasets.build(kind, tmp_path / "c", seed=4, size=SIZE))
    same = [k for k in media if c.get(k) == a[k]]
    assert not same, f"{kind}: seeds 3 and 4 gave the same bytes in {same}"


# --- 2. training -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    from vidrepro.blip2_video.params import Data

    root = tmp_path_factory.mktemp("blip2")
    for kind in ("captions", "images"):
        datasets.build(kind, root / kind, seed=0, size=replace(SIZE, clips=(6, 1, 1), images=4))
    return Data(captions_root=str(root / "captions"), images_root=str(root / "images"))


def test_blip2_pretraining_and_finetuning_repeat_bit_for_bit(captions, pinned):
    """Tiny T5 BLIP-2: image-text pretraining (``01_pretrain``'s second stage), then LoRA
    finetuning on augmented clips (crop and flip draw from torch's global generator, between
    dropout's draws; head-tail frame sampling from the dataset's generator), seeded as
    ``blip2_video.train.main`` seeds it."""
    from vidrepro.blip2_video import pipeline, train, trainable
    from vidrepro.training import LoopConfig

    def run(seed, finetune=True):
        determinism.configure()  # launch.parse
        p = captions.model_copy(update={"seed": seed})
        torch.manual_seed(p.seed)  # train.main
        model = pipeline.load("tiny_t5", p)
        image = train.pretrain_image_text(
            model, pipeline.images(p), LoopConfig(steps=2, lr=3e-3), batch_size=2, seed=p.seed
        )
        if not finetune:
            return state(model), image, None
        trainable.configure(model, lora=True)  # 02_finetune's pipeline.load(init, lora=True)
        clips = pipeline.videos(p, "train", 2, train=True, augment=True)
        video = train.finetune(
            model, clips, LoopConfig(steps=2, lr=3e-3), batch_size=2, seed=p.seed
        )
        return state(model), image, video

    first, i1, v1 = run(0)
    second, i2, v2 = run(0)
    # LoRA's B matrices start at zero and have no weight decay: only gradients move them.
    assert any(k.endswith("lora_B.default.weight") and first[k].any() for k in first)
    assert_same_tensors(first, second)
    assert (i1.step, i1.values) == (i2.step, i2.values)
    assert (v1.step, v1.values) == (v2.step, v2.values)
    _, i3, _ = run(1, finetune=False)
    assert i3.values["loss"] != i1.values["loss"]


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return datasets.build(
        "dense", tmp_path_factory.mktemp("dense"), seed=0, size=replace(SIZE, dense=(3, 1))
    )


@pytest.mark.slow
def test_bmhrl_warm_start_and_hrl_repeat_bit_for_bit(dense, pinned):
    """The warm start (dropout, fitted embeddings) and the hierarchical RL phases (sampled
    captions and Gaussian goals from torch's global generator, delta-CIDEr-D rewards)."""
    from vidrepro.bmhrl import train
    from vidrepro.bmhrl.params import HrlParams, WarmstartParams

    def warm(seed):
        determinism.configure()
        p = WarmstartParams(dense_root=str(dense), steps=3, lr=1e-3, batch_size=3, seed=seed)
        model, _, history = train.warmstart(p, None)
        return state(model), history

    first, h1 = warm(0)
    second, h2 = warm(0)
    assert_same_tensors(first, second)
    assert h1.step == h2.step and h1.values == h2.values
    _, h3 = warm(1)
    assert h3.values["loss"] != h1.values["loss"]

    def hrl(seed):
        determinism.configure()
        p = HrlParams(
            init="tiny",
            critic="",
            rounds=1,
            worker_steps=2,
            manager_steps=1,
            lr=1e-3,
            batch_size=2,
            reward="cider",
            dense_root=str(dense),
            seed=seed,
        )
        agent, critic, _, history = train.train_hrl(p, None)
        return state(agent), state(critic), history

    agent1, critic1, g1 = hrl(0)
    agent2, critic2, g2 = hrl(0)
    assert_same_tensors(agent1, agent2)
    assert_same_tensors(critic1, critic2)
    assert g1.step == g2.step and g1.values == g2.values
    assert {"worker/score", "manager/score"} <= set(g1.values)


@pytest.fixture(scope="module")
def changeit(tmp_path_factory):
    return datasets.build(
        "states",
        tmp_path_factory.mktemp("changeit"),
        seed=0,
        size=replace(SIZE, state_videos=(3, 1)),
    )


def test_object_states_training_repeats_bit_for_bit(changeit, pinned):
    """Multi-task tiny ViT with augmentation (a forked generator per video), pseudo-labels and
    noise-adaptive weights: ``object_states.train.train`` as its command line calls it."""
    from vidrepro.object_states import train
    from vidrepro.object_states.params import TrainParams

    def run(seed):
        determinism.configure()
        p = TrainParams(
            data_root=str(changeit), steps=3, batch_size=2, lr=1e-2, lr_backbone=1e-3, seed=seed
        )
        ((model, history),) = train.train(p, None).values()
        return p, model, history

    p, first, h1 = run(0)
    _, second, h2 = run(0)
    assert_moved(state(train.new_model(p, first.categories)), state(first))
    assert_same_tensors(state(first), state(second))
    assert h1.step == h2.step and h1.values == h2.values
    _, _, h3 = run(1)
    assert h3.values["loss"] != h1.values["loss"]


@pytest.fixture(scope="module")
def merlot_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("merlot")
    for kind in ("pretrain", "qa"):
        datasets.build(kind, root / kind, seed=0, size=replace(SIZE, pretrain_videos=3))
    return root


@pytest.mark.slow
def test_merlot_pretraining_repeats_bit_for_bit(merlot_data):
    """All three objectives (masking, corruption and index shuffling draw from JAX keys folded
    with the step) on real batches of the synthetic pretraining videos, test_merlot's MICRO size.
    XLA's compiles dominate on CPU (about 20 s for the step, 15 s more for ``init_params``,
    whatever the model's size), so the runs share one compiled step (``train.fit`` caches it by
    loss and optimizer) and start from parameters of ``init_params``' shapes drawn by numpy from
    the seed (JAX's own key-to-init path is not what this test is about)."""
    import jax
    from test_merlot import MICRO

    from vidrepro.merlot import models, pipeline, train
    from vidrepro.merlot.input_pipeline import Pretraining
    from vidrepro.merlot.params import PretrainParams

    p = PretrainParams(
        pretrain_root=str(merlot_data / "pretrain"),
        qa_root=str(merlot_data / "qa"),
        steps=4,
        lr=3e-3,
        warmup=1,
        batch_size=2,
        image_size=16,
        segments=4,
        shuffle_prob=0.5,
    )
    tokenizer = pipeline.tokenizer_for(p)
    cfg = replace(MICRO, vocab_size=-(-len(tokenizer) // 64) * 64, image_size=p.frame_hw)
    shapes = jax.eval_shape(partial(models.init_params, cfg), jax.random.key(0))

    def init(seed):
        rng = np.random.default_rng(seed)

        def leaf(path, s):
            name = jax.tree_util.keystr(path)
            fill = (
                np.ones(s.shape)
                if name.endswith("['scale']")
                else np.zeros(s.shape)
                if name.endswith("['bias']")
                else rng.normal(0.0, 0.05, s.shape)
            )
            return jax.numpy.asarray(fill, s.dtype)

        return jax.tree_util.tree_map_with_path(leaf, shapes)

    tx = train.optimizer(pipeline.optim(p))
    loss = partial(train.pretrain_losses, cfg=cfg, obj=pipeline.objectives(p))

    def run(seed):
        data = Pretraining.load(Path(p.pretrain_root), p.segments, p.frame_hw)
        params = init(seed)
        batches = lambda step: data.batch(tokenizer, step, p.batch_size, cfg.text_len, seed)
        out, history = train.fit(
            train.create_state(params, tx), loss, tx, batches, p.steps, seed=seed
        )
        return params, out, history

    start, first, h1 = run(0)
    _, second, h2 = run(0)
    leaves1 = jax.tree_util.tree_leaves_with_path(first)
    leaves2 = jax.tree_util.tree_leaves(second)
    assert len(leaves1) == len(leaves2)
    differ = [
        jax.tree_util.keystr(k)
        for (k, a), b in zip(leaves1, leaves2)
        if not np.array_equal(np.asarray(a), np.asarray(b))
    ]
    assert not differ, f"{len(differ)} of {len(leaves1)} leaves differ: {differ[:5]}"
    assert h1.step == h2.step and h1.values == h2.values
    assert {"contrastive", "mlm", "temporal"} <= set(h1.values)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree_util.tree_leaves(start), jax.tree_util.tree_leaves(first.params))
    )
    _, _, h3 = run(1)
    assert h3.values["loss"] != h1.values["loss"]


# --- 3. the runner -----------------------------------------------------------------------------


class DrawParams(P.Params):
    seed: int = 0
    n: int = 64


PAPER, NOTEBOOK = "determinism", "draw"
WORDS = ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta")
DRAW = f"""
import os
import numpy as np
import torch
from vidrepro import runs
out = runs.run_dir()
torch.manual_seed(seed)
a = torch.randn(n, n)
runs.log_metrics(
    torch_draws=torch.rand(3).tolist(),
    numpy_draws=np.random.default_rng(seed).random(3).tolist(),
    matmul_sum=float((a @ a).sum()),
    threads=torch.get_num_threads(),
    deterministic=torch.are_deterministic_algorithms_enabled(),
    omp=os.environ.get("OMP_NUM_THREADS"),
    hashseed=os.environ.get("PYTHONHASHSEED"),
    hash_abc=hash("abc"),
    set_order=list(set({WORDS!r})),
)
"""


@pytest.fixture
def draw_root(tmp_path, monkeypatch):
    """A scratch project (as conftest's demo_root) with one notebook that draws random numbers;
    the parent's environment is set so that only ``runs.execute`` can make the kernel pinned:
    one thread asked for, two inherited, string hashing randomised."""
    P.register(PAPER, NOTEBOOK, DrawParams)
    root = tmp_path / "project"
    (root / "notebooks" / PAPER).mkdir(parents=True)
    nbformat.write(
        notebook("seed = 0\nn = 64", DRAW), root / "notebooks" / PAPER / f"{NOTEBOOK}.ipynb"
    )
    for scale in P.SCALES:
        (root / "params" / PAPER / scale).mkdir(parents=True)
        (root / "params" / PAPER / scale / f"{NOTEBOOK}.yaml").write_text("seed: 5\nn: 64\n")
    monkeypatch.setenv("VIDREPRO_ROOT", str(root))
    monkeypatch.chdir(root)
    monkeypatch.setenv(determinism.THREADS_ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    for name in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONHASHSEED", "random")
    return root


def hashing_with_seed_0() -> tuple[int, list[str]]:
    """hash('abc') and a set's order in a fresh interpreter with PYTHONHASHSEED=0."""
    code = f"import json; print(json.dumps([hash('abc'), list(set({WORDS!r}))]))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    ).stdout
    value, order = json.loads(out)
    return value, order


@pytest.mark.slow
def test_a_notebook_step_executed_twice_logs_the_same_metrics(draw_root):
    path = draw_root / "notebooks" / PAPER / f"{NOTEBOOK}.ipynb"
    p = P.load(P.schema_for(PAPER, NOTEBOOK), P.params_path(draw_root, PAPER, NOTEBOOK, "tiny"))
    assert p == DrawParams(seed=5)
    one = runs.execute(path, p, draw_root / "runs" / "one", progress=False)
    two = runs.execute(path, p, draw_root / "runs" / "two", progress=False)
    assert one.metrics == two.metrics
    assert one.metrics == runs.read_record(draw_root / "runs" / "two")["metrics"]

    m = one.metrics
    assert determinism.threads() == 1
    assert m["threads"] == 1 and m["omp"] == "1"  # not the parent's OMP_NUM_THREADS=2
    assert one.record["provenance"]["threads"] == 1
    assert m["hashseed"] == "0" and m["deterministic"]  # runs.run_dir configured torch
    assert [m["hash_abc"], m["set_order"]] == list(hashing_with_seed_0())
    g = torch.Generator().manual_seed(5)  # the params file's seed reached the kernel
    torch.randn(64, 64, generator=g)
    assert m["torch_draws"] == torch.rand(3, generator=g).tolist()
    assert m["numpy_draws"] == np.random.default_rng(5).random(3).tolist()
    # the runner handed the kernel its settings without keeping them
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["PYTHONHASHSEED"] == "random"
    assert runs.RUN_DIR_ENV not in os.environ


# --- 4. thread settings ------------------------------------------------------------------------


@pytest.fixture
def no_thread_env(monkeypatch):
    for name in (determinism.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_threads_prefers_vidrepro_threads_then_omp_then_one(no_thread_env):
    env = no_thread_env
    assert determinism.threads() == 1  # not the machine's cores: tables repeat on any machine
    env.setenv("OMP_NUM_THREADS", "3")
    assert determinism.threads() == 3
    env.setenv(determinism.THREADS_ENV, "5")
    assert determinism.threads() == 5
    env.setenv("OMP_NUM_THREADS", "abc")  # not read when VIDREPRO_THREADS is given
    assert determinism.threads() == 5
    env.setenv(determinism.THREADS_ENV, "")  # empty counts as unset
    env.setenv("OMP_NUM_THREADS", "4")
    assert determinism.threads() == 4


@pytest.mark.parametrize("name", [determinism.THREADS_ENV, "OMP_NUM_THREADS"])
@pytest.mark.parametrize("value", ["0", "abc", "-2", "1.5"])
def test_threads_rejects_a_bad_count_naming_the_variable(no_thread_env, name, value):
    no_thread_env.setenv(name, value)
    with pytest.raises(ValueError, match=rf"\${name}={value!r}"):
        determinism.threads()


def test_environment_pins_hashing_and_every_thread_count(no_thread_env):
    no_thread_env.setenv(determinism.THREADS_ENV, "3")
    env = determinism.environment()
    assert env["PYTHONHASHSEED"] == "0"
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        determinism.THREADS_ENV,
    ):
        assert env[name] == "3", name
    no_thread_env.setenv(
        "XLA_FLAGS", "--xla_force_host_platform_device_count=8 --xla_cpu_multi_thread_eigen=false"
    )
    flags = determinism.environment()["XLA_FLAGS"].split()
    assert flags == [
        "--xla_force_host_platform_device_count=8",
        "--xla_cpu_multi_thread_eigen=true",
        "intra_op_parallelism_threads=3",
    ]


def test_configure_pins_threads_and_seeds_every_global_generator(no_thread_env, pinned):
    import random

    no_thread_env.setenv(determinism.THREADS_ENV, "3")  # neither torch's default nor pinned's

    def draws(seed):
        assert determinism.configure(seed) == 3
        assert torch.get_num_threads() == 3 and torch.are_deterministic_algorithms_enabled()
        return random.random(), np.random.random(), torch.rand(1).item()

    assert draws(7) == draws(7)
    assert draws(7) != draws(8)


def test_cpu_names_the_processor_and_its_widest_vector_instructions():
    import re

    assert re.fullmatch(r".+ \((AVX\w*|SSE42|SVE|ASIMD|baseline)\)", determinism.cpu())
