"""evaluate_captions must give pycocoevalcap's numbers and fail clearly without Java."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor

from vidrepro.metrics import captions
from vidrepro.metrics.captions import METRICS, JavaNotFoundError, evaluate_captions, tokenize

requires_java = pytest.mark.skipif(shutil.which("java") is None, reason="needs a java runtime")

GTS = {
    "video0": [
        "A man is riding a horse on the beach.",
        "Someone rides a brown horse along the shore.",
        "A person on horseback moves across the sand.",
    ],
    "video1": [
        "A woman slices onions in a kitchen.",
        "A cook is chopping an onion on a board.",
        "Someone cuts vegetables with a knife.",
    ],
    7: [
        "Two dogs play in the snow.",
        "Dogs are running through deep snow.",
        "A pair of puppies chase each other outside.",
    ],
}
PERFECT = {k: [refs[0]] for k, refs in GTS.items()}  # each hypothesis is a reference
BAD = {k: ["The stock market closed lower on Tuesday."] for k in GTS}
Evaluated = tuple[dict[str, float], dict[str, float]]  # scores of PERFECT, of BAD


class _RecordingMeteor(Meteor):
    instances: list[Meteor] = []

    def __init__(self) -> None:
        super().__init__()
        self.instances.append(self)


@pytest.fixture(scope="module")
def evaluated() -> Evaluated:
    """Perfect and bad hypotheses, evaluated concurrently: METEOR takes ~8 s to start."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(captions, "Meteor", _RecordingMeteor)
        with ThreadPoolExecutor(2) as pool:
            perfect = pool.submit(evaluate_captions, GTS, PERFECT)
            bad = pool.submit(evaluate_captions, GTS, BAD)
            return perfect.result(), bad.result()


@pytest.mark.slow
@pytest.mark.java
@requires_java
def test_keys_and_scale(evaluated: Evaluated) -> None:
    for scores in evaluated:
        assert list(scores) == list(METRICS)
        assert all(type(v) is float for v in scores.values())
        assert all(0.0 <= v <= 1.0 for k, v in scores.items() if k != "CIDEr")  # not x100
    assert evaluated[0]["Bleu_1"] == pytest.approx(1.0)  # each hypothesis is a reference


@pytest.mark.slow
@pytest.mark.java
@requires_java
def test_perfect_beats_bad_on_every_metric(evaluated: Evaluated) -> None:
    perfect, bad = evaluated
    for name in METRICS:
        assert perfect[name] > bad[name], name


@pytest.mark.java
@requires_java
def test_matches_pycocoevalcap_on_same_tokens(evaluated: Evaluated) -> None:
    gts_tok, res_tok = tokenize(GTS), tokenize(PERFECT)
    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    cider, _ = Cider().compute_score(gts_tok, res_tok)
    perfect = evaluated[0]
    assert [perfect[f"Bleu_{i}"] for i in range(1, 5)] == pytest.approx(bleu, abs=1e-12)
    assert perfect["CIDEr"] == pytest.approx(cider, abs=1e-12)
    assert cider > 1.0


@pytest.mark.java
@requires_java
def test_meteor_process_is_stopped(evaluated: Evaluated) -> None:
    assert len(_RecordingMeteor.instances) == 2
    assert all(m.meteor_p.poll() is not None for m in _RecordingMeteor.instances)


@pytest.mark.java
@requires_java
def test_tokenize() -> None:
    out = tokenize(
        {
            "a": ["A man, riding a Horse.", {"caption": "It's\r\nfine!"}],
            "b": [],
            "c": ["Last one?"],
        }
    )
    # A line break inside a caption must not shift the captions after it.
    assert out == {"a": ["a man riding a horse", "it 's fine"], "b": [], "c": ["last one"]}


def test_java_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)

    def must_not_start(*args: object, **kwargs: object) -> None:
        raise AssertionError("started a Java program without java")

    monkeypatch.setattr(captions, "PTBTokenizer", must_not_start)
    monkeypatch.setattr(captions, "Meteor", must_not_start)
    with pytest.raises(JavaNotFoundError) as err:
        evaluate_captions(GTS, PERFECT)
    message = str(err.value)
    needles = ["METEOR", "PTB tokenizer", "Java 8"]
    needles += ["apt-get install default-jre", "conda install openjdk"]
    for needle in needles:
        assert needle in message
    assert isinstance(err.value, RuntimeError)
    with pytest.raises(JavaNotFoundError):
        tokenize({"a": ["text"]})


def test_input_validation() -> None:
    with pytest.raises(ValueError, match=r"missing from gts: \['stray', 99\]"):
        evaluate_captions(GTS, {**PERFECT, "stray": ["x"], 99: ["y"]})
    with pytest.raises(ValueError, match=r"empty hypothesis list for ids \['video1'\]"):
        evaluate_captions(GTS, {**PERFECT, "video1": []})
    with pytest.raises(ValueError, match="without a hypothesis"):
        evaluate_captions(GTS, {"video0": PERFECT["video0"]})
    with pytest.raises(ValueError, match="more than one hypothesis"):
        evaluate_captions(GTS, {**PERFECT, 7: ["a", "b"]})


def test_item_names_keep_only_the_metrics_that_average() -> None:
    assert captions.item_name("CIDEr") == "CIDEr" and captions.item_name("ROUGE_L") == "ROUGE_L"
    assert captions.item_name("METEOR") == "METEOR_sentence"
    assert captions.item_name("Bleu_4") == "Bleu_4_sentence"
    with pytest.raises(ValueError, match="unknown caption metric"):
        captions.item_name("SPICE")


@pytest.mark.java
@requires_java
def test_per_item_cider_and_rouge_average_to_the_corpus_scores() -> None:
    """One right, one wrong, one half-right hypothesis: per-item scores that differ, whose mean
    is the corpus CIDEr (document frequencies from all three items) and ROUGE-L."""
    res = {**PERFECT, "video1": BAD["video1"], 7: ["Two dogs run in the snow."]}
    corpus, items = captions.score_captions(GTS, res, ("Bleu_4", "ROUGE_L", "CIDEr"))
    assert list(corpus) == ["Bleu_4", "ROUGE_L", "CIDEr"]
    assert list(items) == list(GTS)
    assert set(items["video0"]) == {"Bleu_4_sentence", "ROUGE_L", "CIDEr"}
    cider_items = [s["CIDEr"] for s in items.values()]
    assert len(set(cider_items)) == 3
    assert sum(cider_items) / 3 == pytest.approx(corpus["CIDEr"], rel=1e-12)
    assert sum(s["ROUGE_L"] for s in items.values()) / 3 == pytest.approx(
        corpus["ROUGE_L"], rel=1e-12
    )
    cider, _ = Cider().compute_score(tokenize(GTS), tokenize(res))
    assert corpus["CIDEr"] == pytest.approx(cider, abs=1e-12)
    # sentence BLEU is not a decomposition of corpus BLEU: hence its own column name
    assert sum(s["Bleu_4_sentence"] for s in items.values()) / 3 != pytest.approx(corpus["Bleu_4"])
