"""Caption metrics exactly as the coco-caption toolkit (pycocoevalcap) computes them.

Published video-captioning tables report BLEU-1..4, METEOR, ROUGE-L and CIDEr
from pycocoevalcap after Stanford PTB tokenisation; a reproduction only matches
them if both steps are the same, so this is a validated wrapper around that
code, not a reimplementation. Scores keep pycocoevalcap's scale (0-1, CIDEr
0-10), not the x100 of most papers.

METEOR and the PTB tokenizer are Java programs: one evaluation starts Java once
for the tokenizer and once for METEOR, and stops both before returning.

SPICE is deliberately left out: it downloads Stanford CoreNLP models on first
use, which this kit does not assume it can do.
"""

from __future__ import annotations

import shutil
from collections.abc import Hashable, Mapping, Sequence

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


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
    _check_inputs(gts, res)
    _require_java()
    both = {("gts", k): v for k, v in gts.items()} | {("res", k): v for k, v in res.items()}
    tokens = tokenize(both)
    gts_tok = {k: tokens[("gts", k)] for k in gts}
    res_tok = {k: tokens[("res", k)] for k in gts}

    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    scores = dict(zip(METRICS[:4], bleu))
    meteor = Meteor()
    try:
        scores["METEOR"], _ = meteor.compute_score(gts_tok, res_tok)
    finally:
        _close(meteor)
    scores["ROUGE_L"], _ = Rouge().compute_score(gts_tok, res_tok)
    scores["CIDEr"], _ = Cider().compute_score(gts_tok, res_tok)
    return {name: float(scores[name]) for name in METRICS}


def tokenize(
    captions: Mapping[Hashable, Sequence[str | Mapping[str, str]]],
) -> dict[Hashable, list[str]]:
    """PTB-tokenise, lower-case and drop punctuation, as coco-caption does before scoring.

    ``captions`` is ``{id: [caption, ...]}`` with captions as text or in
    PTBTokenizer's own ``{"caption": text}`` form; returns ``{id: [tokens joined
    by spaces, ...]}``. One Java run for the whole dict.
    """
    _require_java()
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


def _require_java() -> None:
    if shutil.which("java") is None:
        raise JavaNotFoundError(
            "METEOR and the PTB tokenizer need a Java runtime (Java 8 or newer) and no "
            "`java` is on PATH. Install one, e.g. `apt-get install default-jre` or "
            "`conda install openjdk`, then make sure `java -version` works."
        )


def _close(meteor: Meteor) -> None:
    """Stop METEOR's Java process now; pycocoevalcap only does it in ``__del__``."""
    with meteor.lock:
        proc = meteor.meteor_p
        proc.stdin.close()
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
