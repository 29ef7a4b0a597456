"""A word-level tokenizer built from a caption corpus, as a real ``PreTrainedTokenizerFast``.

Tiny models learn a two-hundred-word synthetic language in minutes if each word is one token;
wrapping the vocabulary in the HF tokenizer class keeps the rest of the code (padding,
``save_pretrained`` / ``from_pretrained``, ``batch_decode``) the same as with the full models'
SentencePiece/BPE tokenizers. Special tokens follow T5: pad 0, end-of-sequence 1, unknown 2.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIALS = (PAD, EOS, UNK)


def words(text: str) -> list[str]:
    """Lower-case words and punctuation, the same split the tokenizer applies."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def build(
    corpus: Iterable[str], min_count: int = 1, extra_specials: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    """``extra_specials`` (e.g. MERLOT's mask and segment-start tokens) take ids 3, 4, ..."""
    counts = Counter(w for text in corpus for w in words(text))
    vocab = {tok: i for i, tok in enumerate(SPECIALS + tuple(extra_specials))}
    for word, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if n >= min_count:
            vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    core.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        unk_token=UNK,
        model_max_length=64,
        additional_special_tokens=list(extra_specials),
    )
