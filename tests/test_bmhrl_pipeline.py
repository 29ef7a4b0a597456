"""BMHRL's stages end to end on a few synthetic dense videos: warm start, critic, hierarchical
RL and evaluation from the command line, DDP with two processes, resuming the RL phases."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from vidrepro.bmhrl import pipeline, train
from vidrepro.bmhrl.agent import HierarchicalCaptioner
from vidrepro.bmhrl.model import BMT
from vidrepro.bmhrl.params import EvalParams, HrlParams
from vidrepro.data.synthetic import datasets
from vidrepro.history import curves
from vidrepro.metrics import captions


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    datasets.build("dense", root, size=replace(datasets.SIZES["tiny"], dense=(6, 2)))
    return root


def run(stage: str, out, dense, *overrides: str, launcher: list[str] | None = None):
    cmd = (launcher or [sys.executable, "-m"]) + [
        "vidrepro.bmhrl.train",
        stage,
        "--out",
        str(out),
        "-p",
        f"dense_root={dense}",
    ]
    for o in overrides:
        cmd += ["-p", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "model"


@pytest.fixture(scope="module")
def trained(dense, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    warm = run("warmstart", tmp / "ws", dense, "steps=3", "batch_size=4")
    critic = run("critic", tmp / "critic", dense, "steps=3", "batch_size=4")
    return warm, critic


@pytest.mark.slow
def test_stages_from_the_command_line_save_loadable_models(trained, dense, tmp_path):
    warm, critic = trained
    model, vocab, none = pipeline.load(warm)
    assert isinstance(model, BMT) and none is None
    assert len(curves(warm)["loss"]) == 3
    agent_dir = run(
        "hrl",
        tmp_path / "hrl",
        dense,
        f"init={warm}",
        f"critic={critic}",
        "rounds=1",
        "worker_steps=2",
        "manager_steps=1",
        "batch_size=3",
        "reward=cider",
    )
    agent, vocab2, critic_model = pipeline.load(agent_dir)
    assert isinstance(agent, HierarchicalCaptioner) and critic_model is not None
    assert vocab2 == vocab
    values = curves(agent_dir)
    assert len(values["worker/score"]) == 2 and len(values["manager/score"]) == 1
    # the warm-started BMT inside the agent moved during the worker phase only
    before = dict(model.named_parameters())
    moved = [n for n, p in agent.bmt.named_parameters() if not torch.equal(p, before[n])]
    assert moved and not any(n.startswith("word_embedding") for n in moved)


@pytest.mark.slow
def test_evaluation_scores_both_annotation_sets(trained, dense, monkeypatch):
    warm, _ = trained
    p = EvalParams(model=str(warm), dense_root=str(dense))
    model, vocab, critic = pipeline.load_or_new(p.model, p)
    started = []

    class CountedMeteor(captions.Meteor):
        def __init__(self):
            super().__init__()
            started.append(self)

    monkeypatch.setattr(captions, "Meteor", CountedMeteor)
    scores, records, _ = pipeline.evaluate(model, critic, vocab, p, [0.5])
    assert len(started) == 1  # one METEOR process for val_1 and val_2
    for metric in ("METEOR", "Bleu_4", "CIDEr"):
        assert 0 <= scores[metric] <= 10
        assert scores[metric] == pytest.approx(
            (scores[f"{metric}/val_1"] + scores[f"{metric}/val_2"]) / 2
        )
    assert {r["split"] for r in records} == {"val_1", "val_2"}
    lanes = pipeline.timeline_rows(
        records, pipeline.dataset(p, "val_1", vocab).references(), records[0]["video"], "val_1"
    )
    assert lanes["reference"] and lanes["generated"]


@pytest.mark.slow
def test_hrl_resumes_finished_phases_and_rejects_a_mismatched_start(trained, dense, tmp_path):
    warm, critic = trained
    p = HrlParams(
        init=str(warm),
        critic=str(critic),
        rounds=1,
        worker_steps=1,
        manager_steps=1,
        lr=1e-4,
        batch_size=2,
        reward="cider",
        dense_root=str(dense),
    )
    first, *_, h1 = train.train_hrl(p, tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "round0_worker").is_dir()
    *_, h2 = train.train_hrl(p.model_copy(update={"rounds": 2}), tmp_path / "ckpt")
    # round 0 came back from its checkpoints (same numbers), round 1 ran
    assert h2.values["worker/score"][0] == h1.values["worker/score"][0]
    assert len(h2.values["worker/score"]) == 2
    agent_dir = pipeline.save(
        tmp_path / "agent", first, *pipeline.load(warm)[1:2], h1, pipeline.load_critic(critic)[0]
    )
    with pytest.raises(TypeError, match="holds an HRL agent"):
        train.train_hrl(p.model_copy(update={"init": str(agent_dir)}), None)


@pytest.mark.slow
def test_warm_start_under_torchrun_with_two_processes(dense, tmp_path):
    model = run(
        "warmstart",
        tmp_path,
        dense,
        "steps=2",
        "batch_size=2",
        launcher=[sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m"],
    )
    loaded, _, _ = pipeline.load(model)
    assert isinstance(loaded, BMT)


def test_a_config_name_gives_an_untrained_model_on_the_data_vocabulary(dense):
    p = EvalParams(model="tiny", dense_root=str(dense))
    model, vocab, critic = pipeline.load_or_new(p.model, p)
    assert isinstance(model, BMT) and critic is None
    assert model.cfg.vocab_size == len(vocab) == len(pipeline.build_vocab(p))
    with pytest.raises(FileNotFoundError, match="not a BMHRL model folder"):
        pipeline.load(dense)


def test_split_average_weights_videos_that_only_one_split_holds():
    """val_1 with 2 videos, val_2 with 3 (one shared): the weighted mean of the rows is the
    mean of the two splits' means, which neither the plain row mean nor one row per video
    without weights gives."""
    per_split = {
        "val_1": {"a": {"M": 1.0}, "b": {"M": 0.0}},
        "val_2": {"b": {"M": 0.5}, "c": {"M": 1.0}, "d": {"M": 0.0}},
    }
    rows = pipeline.average_splits(per_split)
    assert [r["item"] for r in rows] == ["a", "b", "c", "d"]
    logged = (0.5 + 0.5) / 2
    weighted = sum(r["M"] * r["weight"] for r in rows) / sum(r["weight"] for r in rows)
    assert weighted == pytest.approx(logged, rel=1e-12)
    assert sum(r["M"] for r in rows) / len(rows) != pytest.approx(logged)
    assert sum(r["weight"] for r in rows) == pytest.approx(len(rows))
    same = pipeline.average_splits(
        {"val_1": {"a": {"M": 1.0}, "b": {"M": 0.0}}, "val_2": {"a": {"M": 0.5}, "b": {"M": 0.5}}}
    )
    assert same == [
        {"item": "a", "weight": pytest.approx(1.0), "M": pytest.approx(0.75)},
        {"item": "b", "weight": pytest.approx(1.0), "M": pytest.approx(0.25)},
    ]


@pytest.mark.slow
def test_per_video_scores_average_to_the_logged_ones(dense, monkeypatch):
    """As the evaluation notebook logs them, at two thresholds: each metric's weighted mean over
    the videos is the score averaged over thresholds, val_1 and val_2. Every other segment is
    captioned with its reference sentence, so the scores are far from 0 and differ by video,
    and every third one is cut to half its length (tIoU 0.5), so the thresholds differ."""
    captioned = pipeline.caption_segments

    def half_right(*args, **kwargs):
        _, records = captioned(*args, **kwargs)
        predictions = {}
        for k, r in enumerate(records):
            r["sentence"] = r["reference"] if k % 2 else r["sentence"]
            r["end"] = (r["start"] + r["end"]) / 2 if k % 3 == 0 else r["end"]
            predictions.setdefault(r["video"], []).append(
                {"timestamp": [r["start"], r["end"]], "sentence": r["sentence"]}
            )
        return predictions, records

    monkeypatch.setattr(pipeline, "caption_segments", half_right)
    p = EvalParams(model="tiny", dense_root=str(dense))
    model, vocab, critic = pipeline.load_or_new(p.model, p)
    tious = [0.3, 0.9]
    scores, records, items = pipeline.evaluate(model, critic, vocab, p, tious)
    logged = {k: v for k, v in scores.items() if "/" not in k}
    videos = {v for s in pipeline.EVAL_SPLITS for v in pipeline.dataset(p, s, vocab).references()}
    assert sorted(r["item"] for r in items) == sorted(videos)
    assert set(items[0]) == {"item", "weight", *logged}
    assert logged["METEOR"] > 0.05 and logged["CIDEr"] > 0.05
    assert len({r["METEOR"] for r in items}) > 1
    assert scores["Recall/val_1"] < 1  # the cut segments miss at 0.9
    total = sum(r["weight"] for r in items)
    for name, value in logged.items():
        weighted = sum(r[name] * r["weight"] for r in items) / total
        assert weighted == pytest.approx(value, rel=1e-9, abs=1e-12), name
