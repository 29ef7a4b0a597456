"""The BLIP-2 video stages end to end on a small synthetic dataset (a few steps each)."""

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from twoprocs import torchrun

from vidrepro import cli
from vidrepro.blip2_video import build, pipeline, train
from vidrepro.blip2_video.params import Data
from vidrepro.data.synthetic import datasets
from vidrepro.history import curves
from vidrepro.training import LoopConfig

SMALL = replace(datasets.SIZES["tiny"], clips=(12, 2, 4), refs=3, images=12, sentences=60)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    for kind in ("captions", "images"):
        datasets.build(kind, root / kind, seed=0, size=SMALL)
    return Data(captions_root=str(root / "captions"), images_root=str(root / "images"))


@pytest.mark.slow
def test_stages_train_save_load_and_caption(data, tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    clips = pipeline.videos(data, "train", 4, train=True)
    images = pipeline.images(data)
    texts = [e.caption for e in clips.entries] + [e.caption for e in images.entries]
    model = build.from_config("tiny_t5", pipeline.build_tokenizer(texts))
    cfg = LoopConfig(steps=15, lr=3e-3, warmup=2)
    text = train.pretrain_text(model, texts, cfg, batch_size=8)
    assert text.values["loss"][-1] < text.values["loss"][0]
    image = train.pretrain_image_text(model, images, cfg, batch_size=8)
    assert len(image.values["loss"]) == 15
    folder = pipeline.save(model, image, tmp_path / "pretrained")
    assert curves(folder)["loss"] == image.values["loss"]

    model = pipeline.load(str(folder), data, lora=True)
    ft = train.finetune(
        model, clips, LoopConfig(steps=10, lr=3e-3), batch_size=4, checkpoint=tmp_path / "ckpt"
    )
    assert ft.values["loss"][-1] < ft.values["loss"][0]
    rl = train.scst(model, clips, LoopConfig(steps=2, lr=1e-4), batch_size=2, k=3, max_new_tokens=8)
    assert len(rl.values["reward"]) == 2 and all(r >= 0 for r in rl.values["reward"])

    test = pipeline.videos(data, "test", 4, train=False)
    captions = pipeline.caption_videos(model, test, num_beams=2, max_new_tokens=8, min_length=2)
    assert set(captions) == set(test.refs) and all(
        len(c[0].split()) >= 1 for c in captions.values()
    )
    frames, caption = pipeline.caption_file(model, test.root / test.entries[0].video, 4, 64, 2)
    assert frames.shape == (4, 64, 64, 3) and isinstance(caption, str)

    # ``vidrepro caption``, paths relative to the current directory: the notebook's decoding
    saved = pipeline.save(model, ft, tmp_path / "mine" / "model")
    shutil.copy(test.root / test.entries[0].video, tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    argv = ["caption", "clip.mp4", "--model", "mine/model", "--frames", "4", "--beams", "2"]
    assert cli.main(argv) == 0
    loaded = pipeline.load(str(saved), data).eval()
    assert capsys.readouterr().out.strip() == pipeline.caption_file(loaded, "clip.mp4", 4, 64, 2)[1]
    assert cli.main([*argv[:3], "no/such/model"]) == 1  # a named error, not a hub lookup
    assert "no/such/model: no such model folder" in capsys.readouterr().err
    assert cli.main([*argv[:3], "tiny_t5"]) == 2
    assert "untrained" in (err := capsys.readouterr().err) and "allow_untrained" in err


def _snapshot(model, prefix):
    return {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith(prefix)}


def _changed(before, model):
    now = dict(model.named_parameters())
    return {n for n, p in before.items() if not torch.equal(p, now[n])}


def test_vit_pretrains_alone_then_the_image_text_stage_keeps_vit_and_lm(data):
    torch.manual_seed(0)
    images = pipeline.images(data)
    model = build.from_config(
        "tiny_t5", pipeline.build_tokenizer([e.caption for e in images.entries])
    )
    vit, lm = _snapshot(model, "blip2.vision_model."), _snapshot(model, "blip2.language_model.")
    qformer = _snapshot(model, "blip2.qformer.")
    h = train.pretrain_vision(model, images, LoopConfig(steps=12, lr=3e-3, warmup=2), 12)
    assert h.values["loss"][-1] < h.values["loss"][0]
    assert _changed(vit, model) and not _changed(lm, model) and not _changed(qformer, model)
    vit = _snapshot(model, "blip2.vision_model.")
    train.pretrain_image_text(model, images, LoopConfig(steps=3, lr=3e-3), 4)
    assert _changed(vit, model) == {n for n in vit if "post_layernorm" in n}
    assert not _changed(lm, model) and _changed(qformer, model)


def test_caption_loss_falls_with_training_and_keeps_the_model_mode(data):
    torch.manual_seed(0)
    model = pipeline.load("tiny_t5", data)
    clips = pipeline.videos(data, "train", 2, train=True)
    view = pipeline.videos(data, "train", 2, train=False)
    model.train()
    before = pipeline.caption_loss(model, view, max_clips=6)
    assert model.training
    train.finetune(model, clips, LoopConfig(steps=15, lr=3e-3), batch_size=8)
    assert pipeline.caption_loss(model, view, max_clips=6) < before


def test_more_frames_see_more_events_before_any_training(monkeypatch):
    monkeypatch.setitem(datasets.SIZES, "tiny", replace(SMALL, clips=(0, 0, 30)))
    seen = {n: pipeline.events_in_frames(Data(), "test", n) for n in (2, 4, 8, 16)}
    assert 0 < seen[2] < seen[4] < seen[8] <= seen[16] <= 1
    assert pipeline.events_in_frames(Data(captions_root="msrvtt"), "test", 8) is None


@pytest.mark.slow
@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_evaluate_reports_coco_metrics(data):
    model = pipeline.load("tiny_t5", data)
    scores, captions, _ = pipeline.evaluate(
        model,
        pipeline.videos(data, "test", 4, train=False),
        num_beams=2,
        max_new_tokens=6,
        min_length=2,
    )
    assert set(scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    assert len(captions) == 4


@pytest.mark.slow
def test_finetuning_under_torchrun_keeps_replicas_in_sync(data, tmp_path):
    """Two gloo processes, different batches per rank: DDP averages the gradients, so both
    replicas must end with the same (changed) weights."""
    script = Path(__file__).parent / "helpers" / "ddp_blip2_script.py"
    torchrun(script, data.captions_root, tmp_path)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["after"].keys() == r1["after"].keys()
    for name in r0["after"]:
        assert torch.equal(r0["before"][name], r1["before"][name])
        assert torch.allclose(r0["after"][name], r1["after"][name], atol=1e-6), name
    assert any(not torch.equal(r0["before"][n], r0["after"][n]) for n in r0["after"])


def test_bf16_finetuning_learns_and_keeps_fp32_weights(data):
    torch.manual_seed(0)
    model = pipeline.load("tiny_t5", data)
    clips = pipeline.videos(data, "train", 2, train=True)
    history = train.finetune(
        model, clips, LoopConfig(steps=12, lr=3e-3, precision="bf16"), batch_size=4
    )
    assert history.values["loss"][-1] < history.values["loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow
def test_command_line_stages_save_a_loadable_model(data, tmp_path):
    """``python -m vidrepro.blip2_video.train`` runs a notebook's stage from its params file."""

    def stage(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "vidrepro.blip2_video.train",
                *args,
                "-p",
                f"captions_root={data.captions_root}",
                "-p",
                "steps=2",
                "-p",
                "batch_size=2",
                "-p",
                "num_frames=2",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )

    done = stage("finetune", "--out", str(tmp_path / "ft"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = stage(
        "scst",
        "-p",
        f"init={tmp_path / 'ft' / 'model'}",
        "-p",
        "k=2",
        "--out",
        str(tmp_path / "rl"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(curves(tmp_path / "rl" / "model")["reward"]) == 2
    model = pipeline.load(str(tmp_path / "rl" / "model"), data)
    clip = pipeline.videos(data, "test", 2, train=False)[0][0][None]  # (1, T, 3, H, W)
    assert model.decode(model.generate(clip, num_beams=2, max_new_tokens=4))[0]
    done = stage("finetune", "-p", "stepz=3", "--out", str(tmp_path / "typo"))
    assert done.returncode == 2 and "did you mean 'steps'" in done.stderr


@pytest.mark.slow
@pytest.mark.java
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_per_clip_scores_average_to_the_logged_ones(data, monkeypatch):
    """Captions that are right for some clips and wrong for others, so per-clip scores differ:
    the mean of each per-clip column named as a metric is ``evaluate``'s score."""
    import pandas as pd

    clips = pipeline.videos(data, "test", 2, train=False)
    ids = list(clips.refs)
    made = {
        i: [clips.refs[i][0] if k % 2 == 0 else "a thing moves somewhere"]
        for k, i in enumerate(ids)
    }
    monkeypatch.setattr(pipeline, "caption_videos", lambda *args, **kwargs: made)
    scores, captions, items = pipeline.evaluate(
        None, clips, num_beams=2, max_new_tokens=6, min_length=2
    )
    items = pd.DataFrame(items)
    assert items["item"].tolist() == [str(i) for i in ids]
    assert set(items.columns) == {
        "item",
        "ROUGE_L",
        "CIDEr",
        "METEOR_sentence",
        *(f"Bleu_{n}_sentence" for n in range(1, 5)),
    }
    assert items["CIDEr"].nunique() > 1 and scores["CIDEr"] > 0
    for metric in ("ROUGE_L", "CIDEr"):
        assert items[metric].mean() == pytest.approx(scores[metric], rel=1e-12), metric
