"""Object-state-change training and evaluation on a few synthetic ChangeIt videos: reading the
data, augmentation, the training step, resuming, single-task models, evaluation (one process and
two under torchrun), the command line and the params files."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from twoprocs import torchrun

from vidrepro import checkpoints
from vidrepro import params as P
from vidrepro.data.formats.errors import FormatError
from vidrepro.data.synthetic import datasets
from vidrepro.history import curves
from vidrepro.object_states import pipeline, train
from vidrepro.object_states.augment import augment_video, video_seeds, video_transform
from vidrepro.object_states.data import ChangeItData, normalize
from vidrepro.object_states.params import NOTEBOOKS, EvalParams, TrainParams
from vidrepro.paths import project_root
from vidrepro.training import step_rng
from vidrepro.video import VideoDecodeError

SIZE = replace(datasets.SIZES["tiny"], state_videos=(4, 2), state_categories=3)
TINY = (32, 32)  # tiny_vit's input


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return datasets.build("states", tmp_path_factory.mktemp("changeit"), size=SIZE)


@pytest.fixture(scope="module")
def data(root) -> ChangeItData:
    return ChangeItData(root, image_size=TINY)


def params(root, **kw) -> TrainParams:
    values = {
        "data_root": str(root),
        "steps": 3,
        "batch_size": 2,
        "lr": 1e-2,
        "lr_backbone": 1e-3,
        "checkpoint_every": 2,
    }
    return TrainParams(**{**values, **kw})


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- data ------------------------------------------------------------------------------------


def test_reads_training_and_annotated_videos(data):
    assert data.names == ["cutting_triangle", "inflating_circle", "painting_square"]
    assert len(data.train) == 12 and len(data.test) == 6 and not data.train.skipped.count
    assert not {v.video_id for v in data.train} & {v.video_id for v in data.test}
    video = data.train[0]
    frames = data.frames(video)
    assert frames.dtype == torch.uint8 and frames.shape[1:] == (3, 32, 32)
    assert 15 <= len(frames) <= 40  # 1 fps of a 15-35 s video
    assert data.frames(video) is frames  # decoded once
    labels, mismatch = data.labels(data.test[0], len(data.frames(data.test[0])))
    assert abs(mismatch) <= 2 and set(labels.tolist()) <= {0, 1, 2, 3}
    assert data.centering("cutting_triangle") == 0.5 and 0 <= video.score <= 1


def test_missing_and_corrupt_videos_are_named(root, tmp_path):
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    videos = copy / "video_root" / "cutting_triangle"
    (videos / "cuttrain000.mp4").unlink()  # a training video taken down: skipped, counted
    data = ChangeItData(copy, image_size=TINY)
    assert len(data.train) == 11 and data.train.skipped.count == 1
    assert "cuttrain000" in str(data.train.skipped)
    (videos / "cuttrain001.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoDecodeError, match="cuttrain001.mp4"):
        data.frames(next(v for v in data.train if v.video_id == "cuttrain001"))
    (videos / "cuttest000.mp4").unlink()  # a test video: an error naming the file
    with pytest.raises(FormatError, match="cuttest000"):
        ChangeItData(copy, image_size=TINY)
    with pytest.raises(FormatError, match="categories.csv.*'nope'"):
        ChangeItData(root, categories=["nope"], image_size=TINY)


def test_clip_normalisation():
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]) * 255
    frames = mean.round().to(torch.uint8)[None, :, None, None].expand(2, 3, 4, 4)
    x = normalize(frames)
    assert x.dtype == torch.float32 and x.abs().max() < 0.01
    assert normalize(torch.full((1, 3, 1, 1), 255, dtype=torch.uint8))[0, 0, 0, 0] == pytest.approx(
        (1 - 0.48145466) / 0.26862954
    )


# --- augmentation ----------------------------------------------------------------------------


def test_augmentation_is_one_draw_per_video():
    transform = video_transform(TINY)
    image = torch.randint(
        0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8
    )
    video = image.expand(5, 3, 32, 32).clone()  # five identical frames
    state = torch.random.get_rng_state()
    out = augment_video(video, 7, transform)
    assert torch.equal(torch.random.get_rng_state(), state)  # global generator untouched
    assert out.shape == video.shape and out.dtype == torch.uint8
    assert all(torch.equal(out[0], out[t]) for t in range(5))  # identical frames stay so
    assert not torch.equal(out, video)
    assert torch.equal(out, augment_video(video, 7, transform))  # seeded: resumable
    seeds = video_seeds(step_rng(0, 3), 2)
    assert seeds == video_seeds(step_rng(0, 3), 2) and seeds[0] != seeds[1]
    a, b = (augment_video(video, s, transform) for s in seeds)
    assert not torch.equal(a, b)  # two videos, two draws


# --- training --------------------------------------------------------------------------------


def test_gradient_reaches_only_the_selected_frames(root, data):
    p = params(root, augment=False)
    model = train.new_model(p, data.names)
    batch = train.draw_batch(model, data, data.train, p, step=0, rank=0)
    for v in batch.videos:
        v.requires_grad_(True)
    loss, labels = train.batch_loss(model, model, batch, p)
    loss.backward()
    for video, frames in zip(batch.videos, labels.frames, strict=True):
        touched = set(torch.nonzero(video.grad.abs().sum((1, 2, 3))).flatten().tolist())
        assert touched == set(frames.tolist())  # at most 15 frames of a ~25-frame video
    before = weights(model)
    trained, history = train.train_model(p.model_copy(update={"steps": 1}), data, data.names)
    assert len(history.values["loss"]) == 1
    assert any(not torch.equal(v, before[k]) for k, v in trained.state_dict().items())


def test_resume_after_a_kill_gives_the_same_weights(root, data, tmp_path):
    p = params(root, steps=4)
    straight, h1 = train.train_model(p, data, data.names)
    train.train_model(p, data, data.names, tmp_path, stop_at=3)  # killed after step 3
    assert json.loads((checkpoints.complete(tmp_path)[0] / "history.json").read_text())["step"] == 2
    resumed, h2 = train.train_model(p, data, data.names, tmp_path)  # steps 2 and 3 again
    for k, v in straight.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert h2.values["loss"] == h1.values["loss"]


def test_frozen_backbone_checkpoints_the_heads(root, data, tmp_path):
    p = params(root, steps=2, train_backbone=False)
    model, _ = train.train_model(p, data, data.names, tmp_path)
    saved = load_file(checkpoints.complete(tmp_path)[0] / "trainable.safetensors")
    assert saved and all(not k.startswith("backbone.") for k in saved)
    assert torch.equal(
        model.backbone.conv1.weight, train.new_model(p, data.names).backbone.conv1.weight
    )


def test_single_task_trains_one_model_per_category(root, tmp_path):
    p = params(root, steps=1, single_task=True, categories=["cutting_triangle", "painting_square"])
    models = train.train(p, tmp_path / "ckpt")
    assert sorted(models) == ["cutting_triangle", "painting_square"]
    for name, (model, _) in models.items():
        assert model.categories == [name]
        assert model.state_head[-1].out_features == 3 and model.action_head[-1].out_features == 2
        assert checkpoints.complete(tmp_path / "ckpt" / name)
    folder = train.save_run(tmp_path / "model", models, p)
    loaded = pipeline.load_models(folder)
    assert [m.categories for m in loaded] == [["cutting_triangle"], ["painting_square"]]
    scores, _ = pipeline.evaluate(folder, EvalParams(model=str(folder), data_root=str(root)))
    assert scores.num_videos == {"cutting_triangle": 2, "painting_square": 2}
    with pytest.raises(ValueError, match="no model for categories"):
        pipeline.evaluate(
            folder,
            EvalParams(model=str(folder), data_root=str(root), categories=["inflating_circle"]),
        )


def test_evaluate_a_couple_of_videos(root, data):
    model = train.new_model(params(root), data.names).eval()
    p = EvalParams(model="-", data_root=str(root), videos_per_category=1)
    scores, _ = pipeline.evaluate(model, p, data)
    assert scores.num_videos == dict.fromkeys(data.names, 1)
    assert set(scores.summary) == {"state_p1", "action_p1", "joint_state_p1", "joint_action_p1"}
    assert all(0 <= v <= 1 for v in scores.summary.values())
    preds = pipeline.predict(model, data, data.test[:1], progress=False)
    assert preds[0].p_init.shape == (len(data.frames(data.test[0])),)
    json.dumps(pipeline.scores_json(scores))  # what the evaluate stage writes


def test_per_video_scores_average_to_the_logged_summary(root, data):
    """What the evaluation notebook logs: the weighted mean of each per-video column is the
    summary, and every test video is one item, named by its category and id."""
    model = train.new_model(params(root), data.names).eval()
    p = EvalParams(
        model="-", data_root=str(root), categories=["cutting_triangle", "inflating_circle"]
    )
    scores, predictions = pipeline.evaluate(model, p, data)
    items = scores.item_scores()
    assert [r["item"] for r in items] == [f"{v.category}/{v.video_id}" for v in predictions]
    assert len({r["item"] for r in items}) == len(items) == 4
    for k in scores.summary:
        weighted = sum(r[k] * r["weight"] for r in items) / sum(r["weight"] for r in items)
        assert weighted == pytest.approx(scores.summary[k], rel=1e-12, abs=1e-12), k


def test_command_line_train_then_evaluate(root, tmp_path):
    over = [
        "-p",
        f"data_root={root}",
        "-p",
        "steps=2",
        "-p",
        "batch_size=2",
        "-p",
        "categories=[inflating_circle]",
    ]
    train.main(["train", "--out", str(tmp_path / "run"), *over])
    model = tmp_path / "run" / "model"
    assert pipeline.load_models(model)[0].categories == ["inflating_circle"]
    assert len(curves(model)["loss"]) == 2
    train.main(
        [
            "evaluate",
            "--out",
            str(tmp_path / "eval"),
            "-p",
            f"model={model}",
            "-p",
            f"data_root={root}",
        ]
    )
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["num_videos"] == {"inflating_circle": 2} and len(scores["rows"]) == 2


# --- params ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", P.SCALES)
@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_params_files_load(scale, notebook):
    path = P.params_path(project_root(), "object_states", notebook, scale)
    p = P.load(NOTEBOOKS[notebook], path)
    if scale == "full" and notebook == "01_train":
        assert (p.model, p.pretrained, p.train_backbone) == ("ViT-L-14-quickgelu", "openai", True)
    with pytest.raises(
        P.ParamsError,
        match=r"'constriant'.*did you mean 'constraint'"
        if notebook == "01_train"
        else r"'constriant': unknown",
    ):
        P.load(NOTEBOOKS[notebook], path, {"constriant": False})


# --- two processes ---------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_train_and_evaluate_like_one(root, tmp_path):
    script = Path(__file__).parent / "helpers" / "ddp_object_states_script.py"
    torchrun(script, root, tmp_path)
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    for k in ranks[0]:
        assert torch.equal(ranks[0][k], ranks[1][k]), k  # DDP kept the replicas equal
    assert len(curves(tmp_path / "model")["loss"]) == 2
    for name, per_category in (("all", 0), ("one", 1)):
        two = json.loads((tmp_path / f"scores_{name}.json").read_text())
        one, _ = pipeline.evaluate(
            tmp_path / "model",
            EvalParams(model="-", data_root=str(root), videos_per_category=per_category),
        )
        assert two == json.loads(json.dumps(pipeline.scores_json(one)))
        assert len(two["rows"]) == (6 if per_category == 0 else 3)


# --- one video -------------------------------------------------------------------------------


def test_find_state_change_in_a_video_file(root, data):
    model = train.new_model(params(root), data.names)
    video = data.test[0]
    found = pipeline.find_state_change(model, video.path, video.category)
    s1, a, s2 = found.chosen
    assert 0 <= s1 < a < s2 < len(found.frames) == found.probs.shape[1]
    assert found.frames.dtype == torch.uint8 and found.frames.shape[1:] == (3, *TINY)
    p = found.probs.double()
    best = max(
        p[0, i] * p[1, j] * p[2, k]
        for i in range(len(found.frames))
        for j in range(i + 1, len(found.frames))
        for k in range(j + 1, len(found.frames))
    )
    assert p[0, s1] * p[1, a] * p[2, s2] == pytest.approx(float(best), rel=1e-5)  # ties: any
    with pytest.raises(ValueError, match="the model knows"):
        pipeline.find_state_change(model, video.path, "juggling_cube")


def test_your_video_from_a_terminal_with_paths_relative_to_it(
    root, data, tmp_path, monkeypatch, capsys
):
    """``vidrepro states``: the notebook's model checks and search, for a model folder and a
    video given relative to the current directory; an untrained model only when asked for."""
    from vidrepro import cli

    model = train.new_model(params(root), data.names)
    model.save(tmp_path / "mine" / "model")
    video = data.test[0]
    shutil.copy(video.path, tmp_path / "clip.mp4")
    monkeypatch.chdir(tmp_path)
    argv = ["states", "clip.mp4", "--model", "mine/model", "--category", video.category]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    found = pipeline.find_state_change(model, video.path, video.category)
    for name, second in zip(("initial state", "action", "end state"), found.chosen):
        assert f"{name:13s} {second:4d} s" in out
    assert cli.main([*argv[:3], "no/such/model"]) == 1
    assert "no/such/model: no such model folder" in capsys.readouterr().err
    assert cli.main([*argv[:3], "tiny_vit", "--category", video.category]) == 2
    assert "allow_untrained" in capsys.readouterr().err
    assert cli.main([*argv[:4], "--category", "juggling_cube"]) == 2
    assert "juggling_cube" in capsys.readouterr().err
