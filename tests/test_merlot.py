"""MERLOT in JAX/Flax: shapes, order blindness, the objectives' sampling, training, resume,
and the same loss on 1 and 8 devices."""

import os
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vidrepro.history import curves
from vidrepro.merlot import models, story, train
from vidrepro.merlot import objectives as O
from vidrepro.merlot.models import Merlot, ModelConfig

MICRO = ModelConfig(
    vocab_size=64,
    image_size=(16, 16),
    stem_width=8,
    stages=((8, 1, 2), (16, 1, 2)),
    vit_width=16,
    vit_layers=1,
    vit_heads=2,
    hidden=32,
    layers=2,
    heads=2,
    text_len=6,
    max_segments=6,
)


def batch(seed=0, b=4, s=4, cfg=MICRO):
    r = np.random.default_rng(seed)
    text = r.integers(O.SPECIAL_IDS, cfg.vocab_size, (b, s, cfg.text_len)).astype(np.int32)
    text[:, :, 0] = O.START
    text[:, :, -1] = O.PAD
    return {"frames": r.normal(size=(b, s, *cfg.image_size, 3)).astype(np.float32), "text": text}


@pytest.fixture(scope="module")
def params():
    return jax.jit(partial(models.init_params, MICRO))(jax.random.key(0))


def apply(params, method, *args):
    return Merlot(MICRO).apply({"params": params}, *args, method=method)


def test_named_configs_and_token_counts():
    base = ModelConfig.named("base")
    assert base.grid == (12, 22) and base.frame_tokens == 67  # 6x11 pooled + CLS, as the paper
    assert ModelConfig.named("tiny", vocab_size=99).vocab_size == 99
    with pytest.raises(ValueError, match="no MERLOT config 'huge'"):
        ModelConfig.named("huge")
    assert ModelConfig.from_json(MICRO.to_json()) == MICRO


@pytest.mark.slow
def test_shapes(params):
    b = batch()
    tokens, cls = apply(params, Merlot.encode_frames, b["frames"])
    assert tokens.shape == (4, 4, MICRO.frame_tokens, 32) and cls.shape == (4, 4, 16)
    index = jnp.broadcast_to(jnp.arange(4), (4, 4))
    v, t = apply(params, Merlot.joint, tokens, index, b["text"])
    assert v.shape == tokens.shape and t.shape == (4, 4, 6, 32)
    assert apply(params, Merlot.pairs, t[:, :, 0], v[:, :, 0], "text_frame").shape == (4, 4, 4, 4)


@pytest.mark.slow
def test_only_the_frame_index_tells_the_order(params):
    """Permuting the frames together with their indices permutes the outputs; so with every
    index hidden the model cannot see the order frames came in, only their content."""
    b = batch()
    tokens, _ = apply(params, Merlot.encode_frames, b["frames"])
    index = jnp.broadcast_to(jnp.arange(4) + 2, (4, 4))
    perm = np.array([2, 0, 3, 1])
    v, t = apply(params, Merlot.joint, tokens, index, b["text"])
    pv, pt = apply(params, Merlot.joint, tokens[:, perm], index[:, perm], b["text"])
    np.testing.assert_allclose(pv, v[:, perm], atol=1e-4)
    np.testing.assert_allclose(pt, t, atol=1e-4)


@pytest.mark.slow
def test_masking_rate_specials_and_attention_preference():
    text = jnp.asarray(batch(b=64)["text"])
    received = jax.random.uniform(jax.random.key(1), text.shape)
    cfg = O.Objectives(attended_share=1.0)
    masked = O.choose_masked(jax.random.key(2), text, received, cfg)
    assert not bool((masked & (text < O.SPECIAL_IDS)).any())
    rate = float(masked.sum() / (text >= O.SPECIAL_IDS).sum())
    assert 0.1 < rate < 0.3
    starts_only = O.choose_masked(jax.random.key(2), text, received, replace(cfg, mask_rate=0.15))
    flat_r = np.asarray(received).reshape(64, -1)
    flat_m = np.asarray(starts_only).reshape(64, -1)
    ordinary = np.asarray(text).reshape(64, -1) >= O.SPECIAL_IDS
    # Masked tokens sit far above the median attention (spans may spill into lower ones).
    assert np.median(flat_r[flat_m]) > np.median(flat_r[ordinary]) + 0.15


@pytest.mark.slow
def test_corruption_is_80_10_10():
    text = jnp.full((200, 5, 10), 7, jnp.int32)
    masked = jnp.ones(text.shape, bool)
    out = np.asarray(O.corrupt(jax.random.key(0), text, masked, 64))
    assert abs((out == O.MASK).mean() - 0.8) < 0.02
    assert abs((out == 7).mean() - 0.1 - 0.1 / 59) < 0.02  # kept, or drawn as itself


@pytest.mark.slow
def test_shuffled_indices_hide_k_frames_with_distinct_slots():
    index, hidden = O.shuffle_indices(jax.random.key(0), 500, 5, 8, O.Objectives(shuffle_prob=0.4))
    index, hidden = np.asarray(index), np.asarray(hidden)
    k = hidden.sum(1)
    assert set(k) <= {0, 2, 3, 4} and abs((k > 0).mean() - 0.4) < 0.07
    assert (index[~hidden] == np.broadcast_to(np.arange(5), index.shape)[~hidden]).all()
    assert (index[hidden] >= 8).all()
    assert all(len(set(row)) == 5 for row in index)


@pytest.mark.slow
def test_contrastive_loss_prefers_matching_pairs():
    e = jax.random.normal(jax.random.key(0), (2, 4, 8))
    e = e / jnp.linalg.norm(e, axis=-1, keepdims=True)
    assert O.contrastive_loss(e, e, 0.05) < 0.1
    assert O.contrastive_loss(e, jnp.roll(e, 1, axis=1), 0.05) > 5


@pytest.mark.slow
def test_pretraining_learns_and_resumes_exactly(tmp_path, params):
    tx = train.optimizer(train.OptimConfig(steps=8, lr=3e-3, warmup=2))
    loss = partial(train.pretrain_losses, cfg=MICRO, obj=O.Objectives(shuffle_prob=1.0))
    fixed = batch()
    _, history = train.fit(train.create_state(params, tx), loss, tx, lambda s: fixed, 8)
    assert history.values["loss"][-1] < history.values["loss"][0]
    assert {"contrastive", "mlm", "temporal"} <= set(history.values)

    def stopping(step):
        if step == 5:
            raise KeyboardInterrupt  # a kill after the checkpoint at step 4
        return batch(step)

    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        train.fit(
            train.create_state(params, tx),
            loss,
            tx,
            stopping,
            8,
            checkpoint=ckpt,
            checkpoint_every=4,
        )
    resumed, h1 = train.fit(
        train.create_state(params, tx), loss, tx, batch, 8, checkpoint=ckpt, checkpoint_every=4
    )
    straight, h2 = train.fit(train.create_state(params, tx), loss, tx, batch, 8)
    assert h1.values["loss"] == pytest.approx(h2.values["loss"], rel=1e-5)
    for a, b in zip(
        jax.tree_util.tree_leaves(resumed.params), jax.tree_util.tree_leaves(straight.params)
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_qa_head_scores_each_answer(params):
    b = batch(b=2, s=3)
    text = batch(1, b=8, s=3)["text"].reshape(2, 4, 3, -1)  # (B, A, question 2 + answer 1, L)
    qa = {"frames": b["frames"], "text": text, "answer": np.array([0, 3])}
    logits = train.qa_logits(params, qa, MICRO)
    assert logits.shape == (2, 4)
    loss, parts = train.qa_losses(params, qa, None, MICRO)
    assert np.isfinite(loss) and 0 <= parts["accuracy"] <= 1


def test_qa_batch_puts_question_and_answer_in_pretraining_segments():
    from vidrepro.merlot.input_pipeline import VideoQA, build_tokenizer

    tok = build_tokenizer(
        [
            "what happens right after the red box moves to the left ?",
            "the red box shrinks",
            "a blue disc appears",
        ]
    )
    qa = VideoQA(
        np.zeros((1, 2, 4, 4, 3), np.uint8),
        ["what happens right after the red box moves to the left ?"],
        [["the red box shrinks", "a blue disc appears"]],
        np.array([1]),
    )
    text = qa.batch(tok, np.array([0]), text_len=6, question_segments=2)["text"]
    assert text.shape == (1, 2, 3, 6)
    question = tok.decode(text[0, 0, :2].reshape(-1)[1:], skip_special_tokens=True)
    assert question == "what happens right after the red box moves to the left"  # "?" cut
    assert (text[0, :, :2] == text[0, :1, :2]).all()  # the same question for every answer
    assert text[0, 0, 1, 0] != O.START and (text[0, :, 2, 0] == O.START).all()
    assert tok.decode(text[0, 1, 2, 1:], skip_special_tokens=True) == "a blue disc appears"


@pytest.mark.slow
def test_story_orders_are_permutations_and_confusion_counts_them(params):
    b = batch(b=3, s=5)
    orders = story.merlot_orders(params, b["frames"], b["text"], MICRO)
    assert sorted(orders[0].tolist()) == [0, 1, 2, 3, 4]
    assert story.position_confusion(orders).sum(0).tolist() == [3] * 5
    perfect = np.tile(np.arange(5), (4, 1))
    assert story.score(perfect) == {"spearman": 1.0, "pairwise_acc": 1.0, "distance": 0.0}


def test_params_module_does_not_import_jax():
    """The runner imports the params models; on a Colab TPU the driver must not grab the
    TPU that the notebook's kernel needs."""
    code = "import sys, vidrepro.merlot.params; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip() == "False", out.stderr


@pytest.mark.slow
def test_eight_devices_give_the_loss_of_one(tmp_path):
    script = Path(__file__).parent / "helpers" / "merlot_devices_script.py"
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split("=") for line in done.stdout.split() if "=" in line)
    assert int(lines["devices"]) == 8
    one, eight, fsdp = (np.array(eval(lines[k])) for k in ("one", "eight", "fsdp"))
    np.testing.assert_allclose(eight, one, rtol=2e-4)
    np.testing.assert_allclose(fsdp, one, rtol=2e-4)


@pytest.mark.slow
def test_bf16_compute_keeps_float32_parameters(params):
    cfg = replace(MICRO, dtype="bfloat16")
    tx = train.optimizer(train.OptimConfig(steps=2, lr=1e-3))
    loss = partial(train.pretrain_losses, cfg=cfg, obj=O.Objectives(shuffle_prob=1.0))
    state, history = train.fit(train.create_state(params, tx), loss, tx, batch, 2)
    assert all(np.isfinite(history.values["loss"]))
    assert {x.dtype for x in jax.tree_util.tree_leaves(state.params)} == {jnp.dtype("float32")}


@pytest.mark.slow
def test_command_line_pretraining_saves_a_loadable_model(tmp_path):
    """Non-square frames ([height, width], as the paper's 192x352) go from the parameters
    through decoding to the saved config."""
    from vidrepro.data.synthetic import datasets
    from vidrepro.merlot import pipeline

    small = replace(datasets.SIZES["tiny"], pretrain_videos=3, segments=5, qa=(2, 1, 1))
    for kind in ("pretrain", "qa"):
        datasets.build(kind, tmp_path / kind, size=small)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "vidrepro.merlot.train",
            "pretrain",
            "-p",
            "steps=2",
            "-p",
            "batch_size=2",
            "-p",
            "image_size=[16, 24]",
            "-p",
            f"pretrain_root={tmp_path / 'pretrain'}",
            "-p",
            f"qa_root={tmp_path / 'qa'}",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cfg, params, tokenizer = pipeline.load(tmp_path / "run" / "model")
    assert cfg.image_size == (16, 24) and tokenizer.convert_tokens_to_ids("<start>") == O.START
    assert len(curves(tmp_path / "run" / "model")["loss"]) == 2


def test_blanked_qa_and_stories_keep_the_words_and_black_every_frame():
    from vidrepro.merlot.input_pipeline import Stories, VideoQA

    frames = np.random.default_rng(0).integers(1, 255, (2, 3, 4, 4, 3), dtype=np.uint8)
    qa = VideoQA(frames, ["q0", "q1"], [["a", "b"], ["c", "d"]], np.array([1, 0]))
    blank = qa.blanked()
    assert not blank.frames.any() and blank.frames.shape == frames.shape
    assert blank.texts == qa.texts and (blank.answers == qa.answers).all()
    assert qa.frames.all()  # the original is untouched
    stories = Stories(frames, [["a", "b", "c"]] * 2, ["s0", "s1"]).blanked()
    assert not stories.frames.any() and stories.texts[1] == ["a", "b", "c"]


def test_recall_at_1_pools_every_image_of_every_batch(params, monkeypatch):
    """Captions retrieve among all B*S images, across the batches the pool is embedded in."""
    unit = np.eye(15, dtype=np.float32).reshape(5, 3, 15)  # 5 stories x 3 images, one-hot

    def fake(params, frames, text, cfg):  # frames carry their own story index in pixel 0
        rows = frames[:, 0, 0, 0, 0].astype(int)
        return unit[rows], images[rows]

    monkeypatch.setattr(story, "embeddings", fake)
    frames = np.zeros((5, 3, 2, 2, 3), np.float32)
    frames[:, 0, 0, 0, 0] = np.arange(5)
    text = np.zeros((5, 3, 1), np.int32)
    images = unit.copy()
    assert story.recall_at_1(params, frames, text, MICRO, batch_size=2) == 1.0
    images = np.roll(unit, 1, axis=0)  # every caption's nearest image is in another story
    assert story.recall_at_1(params, frames, text, MICRO, batch_size=2) == 0.0
    images = unit.copy()
    images[1] = unit[2]  # story 1's images look like story 2's: neither story's captions hit
    assert story.recall_at_1(params, frames, text, MICRO, batch_size=2) == pytest.approx(9 / 15)


@pytest.mark.slow
def test_retrieval_reads_one_group_per_pretraining_video_and_unseen_stories(tmp_path):
    from vidrepro.data.synthetic import datasets
    from vidrepro.merlot import pipeline
    from vidrepro.merlot.input_pipeline import Pretraining, Stories, build_tokenizer

    small = replace(datasets.SIZES["tiny"], pretrain_videos=3, segments=7, stories=(0, 4, 0))
    datasets.build("pretrain", tmp_path / "pretrain", size=small)
    datasets.build("stories", tmp_path / "stories", size=small)
    data = Pretraining.load(tmp_path / "pretrain", 5, (16, 16))
    assert data.firsts.tolist() == [0, 3, 6]  # 7 segments: 3 groups of 5 per video
    assert all(data.texts[i] != data.texts[i + 1] for i in data.firsts)
    stories = Stories.load(tmp_path / "stories", "val", (16, 16))
    tok = build_tokenizer([t for texts in data.texts + stories.texts for t in texts])
    cfg, params = pipeline.new_model("tiny", tok, (16, 16))
    out = pipeline.retrieval((cfg, params, tok), data, stories, limit=2)
    assert out["chance_seen"] == out["chance_unseen"] == pytest.approx(1 / 10)
    assert {out["recall_seen"] * 10, out["recall_unseen"] * 10} <= set(range(11))


def test_word_vocabulary_reads_each_transcript_once_without_decoding_videos(tmp_path):
    """Scratch and pretraining runs on the same data share word ids: the vocabulary comes from
    the index (each segment once), not from the decoded groups (a segment once per group)."""
    from vidrepro.data.formats import merlot as merlot_format
    from vidrepro.data.synthetic import datasets
    from vidrepro.merlot import pipeline
    from vidrepro.merlot.params import Data

    small = replace(datasets.SIZES["tiny"], pretrain_videos=3, segments=7, qa=(2, 1, 1))
    for kind in ("pretrain", "qa"):
        datasets.build(kind, tmp_path / kind, size=small)
    p = Data(pretrain_root=str(tmp_path / "pretrain"), qa_root=str(tmp_path / "qa"))
    tok = pipeline.tokenizer_for(p)
    words = {
        w
        for v in merlot_format.read_segments(tmp_path / "pretrain")
        for s in v.segments
        for w in s.text.lower().split()
    }
    assert tok.unk_token_id not in tok.convert_tokens_to_ids(sorted(words))
    for video in (tmp_path / "pretrain").rglob("*.mp4"):
        video.unlink()  # nothing is decoded: the index alone gives the same ids
    assert pipeline.tokenizer_for(p).get_vocab() == tok.get_vocab()


@pytest.mark.slow
def test_per_story_scores_average_to_the_logged_ones(params):
    """As the story-ordering notebook logs them: each column's mean is the metric."""
    import pandas as pd

    from vidrepro.merlot.input_pipeline import Stories

    b = batch(seed=3, b=12, s=5)
    frames = np.zeros((12, 5, 2, 2, 3), np.uint8)
    stories = Stories(frames, [["t"] * 5] * 12, [f"story{k}" for k in range(12)])
    orders = story.merlot_orders(params, b["frames"], b["text"], MICRO)
    blanked = story.merlot_orders(params, np.zeros_like(b["frames"]), b["text"], MICRO)
    scores = story.score(orders)
    scores["blanked_spearman"] = story.score(blanked)["spearman"]
    items = pd.DataFrame(story.score_items(stories, orders, blanked))
    assert items["item"].tolist() == stories.ids
    assert set(items.columns) == {"item", *scores}
    assert items["spearman"].nunique() > 1
    for name, value in scores.items():
        assert items[name].mean() == pytest.approx(value, rel=1e-12, abs=1e-12), name
    with pytest.raises(ValueError, match="12 stories"):
        story.score_items(stories, orders[:3], blanked)


def test_per_question_scores_average_to_the_logged_accuracies(tmp_path):
    """Questions read from a QA folder keep their qids; as the QA notebook logs them."""
    import pandas as pd

    from vidrepro.data.formats import videoqa
    from vidrepro.data.synthetic import datasets
    from vidrepro.merlot import pipeline
    from vidrepro.merlot.input_pipeline import VideoQA

    small = replace(datasets.SIZES["tiny"], qa=(0, 0, 4))
    datasets.build("qa", tmp_path / "qa", size=small)
    test = VideoQA.load(tmp_path / "qa", "test", 2, 2.0, (8, 8))
    qids = [q.qid for q in videoqa.read_qa(videoqa.annotation_path(tmp_path / "qa", "test"))]
    assert test.ids == qids and len(set(qids)) == len(qids) >= 4
    rng = np.random.default_rng(0)
    chosen = rng.integers(0, len(test.options[0]), len(qids))
    blind = rng.integers(0, len(test.options[0]), len(qids))
    chosen[:2] = test.answers[:2]  # some right, some wrong
    chosen[2:4] = (test.answers[2:4] + 1) % len(test.options[0])
    scores = {
        "accuracy": float((chosen == test.answers).mean()),
        "blanked_accuracy": float((blind == test.answers).mean()),
    }
    items = pd.DataFrame(pipeline.qa_items(test, chosen, blind))
    assert items["item"].tolist() == qids
    assert set(items["accuracy"]) == {0.0, 1.0}
    for name, value in scores.items():
        assert items[name].mean() == pytest.approx(value, rel=1e-12), name
    with pytest.raises(ValueError, match="need the questions' ids"):
        pipeline.qa_items(replace(test, ids=None), chosen, blind)
