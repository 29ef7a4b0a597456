"""Caption metrics exactly as the coco-caption toolkit (pycocoevalcap) computes them.

Published video-captioning tables report BLEU-1..4, METEOR, ROUGE-L and CIDEr
from pycocoevalcap after Stanford PTB tokenisation; a reproduction only matches
them if both steps are the same, so this is a validated wrapper around that
code, not a reimplementation. Scores keep pycocoevalcap's scale (0-1, CIDEr
0-10), not the x100 of most papers.

METEOR and the PTB tokenizer are Java programs: one evaluation starts Java once
for the tokenizer and once for METEOR, and stops both before returning. Every
METEOR process of the kit comes from :func:`meteor_process`.

``score_captions`` also returns per-item scores (for per-item tables and
paired comparisons); ``item_name`` says which of them average to the corpus
score.

SPICE is deliberately left out: it downloads Stanford CoreNLP models on first
use, which this kit does not assume it can do.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Hashable, Iterator, Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")
MEAN_METRICS = ("ROUGE_L", "CIDEr")
"""The metrics whose corpus score is the mean of their per-item scores."""


class JavaNotFoundError(RuntimeError):
    """No ``java`` on PATH, which METEOR and the PTB tokenizer need."""


def evaluate_captions(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]]
) -> dict[str, float]:
    """coco-caption scores of ``res`` against ``gts``, keys as in ``METRICS``.

    ``gts`` is ``{id: [reference, ...]}`` and ``res`` ``{id: [hypothesis]}``,
    both raw text: they are PTB-tokenised here, together. Every id of ``gts``
    needs a hypothesis, since CIDEr's document frequencies depend on the set.
    """
    return score_captions(gts, res)[0]


def item_name(metric: str) -> str:
    """The per-item column of ``metric``: its own name where the corpus score is the mean of
    the per-item scores (ROUGE_L, CIDEr), else ``<metric>_sentence`` (BLEU and METEOR pool
    n-gram and alignment statistics over the corpus, so their sentence scores do not average
    to it and must not be mistaken for it)."""
    if metric not in METRICS:
        raise ValueError(f"unknown caption metric {metric!r} (known: {', '.join(METRICS)})")
    return metric if metric in MEAN_METRICS else f"{metric}_sentence"


def score_captions(
    gts: Mapping[Hashable, Sequence[str]],
    res: Mapping[Hashable, Sequence[str]],
    metrics: Sequence[str] = METRICS,
) -> tuple[dict[str, float], dict[Hashable, dict[str, float]]]:
    """Corpus scores and per-item scores of ``res`` against ``gts`` (as ``evaluate_captions``).

    Returns ``({metric: corpus score}, {id: {item_name(metric): score}})`` for the requested
    ``metrics`` (in ``METRICS`` order), both from the same pycocoevalcap run, so the per-item
    CIDEr and ROUGE_L average exactly to the corpus ones. METEOR's Java process is only started
    when METEOR is asked for.
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown caption metrics {unknown} (known: {', '.join(METRICS)})")
    _check_inputs(gts, res)
    require_java()
    both = {("gts", k): v for k, v in gts.items()} | {("res", k): v for k, v in res.items()}
    tokens = tokenize(both)
    gts_tok = {k: tokens[("gts", k)] for k in gts}
    res_tok = {k: tokens[("res", k)] for k in gts}

    corpus: dict[str, float] = {}
    per_item: dict[str, list[float]] = {}
    if any(m.startswith("Bleu_") for m in metrics):
        bleu, sentence = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
        for name, score, scores in zip(METRICS[:4], bleu, sentence):
            corpus[name], per_item[name] = score, scores
    if "METEOR" in metrics:
        with meteor_process() as meteor:
            corpus["METEOR"], per_item["METEOR"] = meteor.compute_score(gts_tok, res_tok)
    if "ROUGE_L" in metrics:
        corpus["ROUGE_L"], per_item["ROUGE_L"] = Rouge().compute_score(gts_tok, res_tok)
    if "CIDEr" in metrics:
        corpus["CIDEr"], per_item["CIDEr"] = Cider().compute_score(gts_tok, res_tok)
    names = [m for m in METRICS if m in metrics]
    items = {k: {item_name(m): float(per_item[m][i]) for m in names} for i, k in enumerate(gts_tok)}
    return {m: float(corpus[m]) for m in names}, items


def tokenize(
    captions: Mapping[Hashable, Sequence[str | Mapping[str, str]]],
) -> dict[Hashable, list[str]]:
    """PTB-tokenise, lower-case and drop punctuation, as coco-caption does before scoring.

    ``captions`` is ``{id: [caption, ...]}`` with captions as text or in
    PTBTokenizer's own ``{"caption": text}`` form; returns ``{id: [tokens joined
    by spaces, ...]}``. One Java run for the whole dict.
    """
    require_java()
    payload: dict[Hashable, list[dict[str, str]]] = {}
    for key, caps in captions.items():
        texts = [c["caption"] if isinstance(c, Mapping) else c for c in caps]
        bad = [t for t in texts if not isinstance(t, str)]
        if bad:
            raise TypeError(f"captions of {key!r} must be str, got {type(bad[0]).__name__}")
        # PTBTokenizer pairs output lines with ids by position; a line break
        # inside a caption (pycocoevalcap only replaces "\n") would shift them.
        payload[key] = [{"caption": " ".join(t.splitlines())} for t in texts]
    out = PTBTokenizer().tokenize(payload)
    result = {key: out.get(key, []) for key in captions}
    wrong = [k for k in captions if len(result[k]) != len(captions[k])]
    if wrong:
        raise RuntimeError(f"PTB tokenizer returned the wrong number of captions for {wrong[:10]}")
    return result


def _check_inputs(
    gts: Mapping[Hashable, Sequence[str]], res: Mapping[Hashable, Sequence[str]]
) -> None:
    unknown = [k for k in res if k not in gts]
    if unknown:
        raise ValueError(f"res ids missing from gts: {unknown[:20]}")
    unanswered = [k for k in gts if k not in res]
    if unanswered:
        raise ValueError(f"gts ids without a hypothesis in res: {unanswered[:20]}")
    no_hyp = [k for k, hyps in res.items() if len(hyps) == 0]
    if no_hyp:
        raise ValueError(f"empty hypothesis list for ids {no_hyp[:20]}")
    many = [k for k, hyps in res.items() if len(hyps) > 1]
    if many:
        raise ValueError(f"more than one hypothesis for ids {many[:20]}; pass exactly one")
    no_ref = [k for k, refs in gts.items() if len(refs) == 0]
    if no_ref:
        raise ValueError(f"empty reference list for ids {no_ref[:20]}")


def require_java() -> None:
    """Raise :class:`JavaNotFoundError` with how to install Java when none is on PATH."""
    if shutil.which("java") is None:
        raise JavaNotFoundError(
            "METEOR and the PTB tokenizer need a Java runtime (Java 8 or newer) and no "
            "`java` is on PATH. Install one, e.g. `apt-get install default-jre` or "
            "`conda install openjdk`, then make sure `java -version` works."
        )


@contextlib.contextmanager
def meteor_process() -> Iterator[Meteor]:
    """One METEOR (Java) process, however many sets it scores, stopped on exit."""
    meteor = Meteor()
    try:
        yield meteor
    finally:
        close_meteor(meteor)


def close_meteor(meteor: Meteor) -> None:
    """Stop METEOR's Java process now; pycocoevalcap only does it in ``__del__``."""
    with meteor.lock:
        proc = meteor.meteor_p
        proc.stdin.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
