"""BMT, the Bi-modal Transformer of Iashin & Rahtu (BMVC 2020), the captioner BMHRL builds on.

The audio (VGGish, 128-d) and video (summed RGB + flow I3D, 1024-d) rows of an event enter at
their own widths, with sinusoidal positions. Every encoder layer runs, per modality, pre-LN
self-attention, then bi-modal cross-attention (audio queries attend video: A->V, and V->A), then
an FFN; the encoder returns the audio stream that attended video (``Av``) and the video stream
that attended audio (``Va``). Every decoder layer runs masked self-attention over the caption,
two parallel cross-attentions (to ``Av`` and to ``Va``) fused by concatenation and a linear
"bridge", then an FFN; a linear generator gives log-probabilities over the vocabulary.

Widths, as in BMT: no stream is projected to a common width. Attention maps queries (width d_q)
and keys/values (width d_kv) into ``d_model`` (1024, split over 4 heads) and projects its output
back to d_q, so each stream keeps its width through the stack: audio 128, video 1024, caption
``d_caption`` (BMT's ``d_model_caps`` = 300, the GloVe width, so the frozen GloVe vectors are the
caption stream). With ``d_caption != d_word`` the word vectors go through Linear + ReLU first, as
BMT's ``VocabularyEmbedder`` does. FFNs are 4x their stream's width unless ``d_ff`` is set.

``modalities="video"`` or ``"audio"`` (the hrl_visual_only / hrl_audio_only rows): the same
classes with one stream; encoder layers skip the cross-attention (a plain pre-LN transformer
encoder) and decoder layers have one cross-attention and no bridge. (BMT's own uni-modal model
is a separate class whose caption stream has the feature's width; here only the bi-modal parts
are removed, so the ablation changes one thing.)

Kept from BMT: xavier-uniform init, word vectors scaled by sqrt(d_caption), BMT's sinusoid
variant, dropout on the attention output (not the weights), no final LayerNorm, cross-attention
keys taken from the other stream's un-normalised residual. Changed: attention is
``F.scaled_dot_product_attention``; masks are explicit (BMT derived feature masks from
``feature[:, :, 0] != pad_idx``, i.e. from the feature values); decoding encodes once and caches
(see :func:`greedy_decode`); finished captions are padded.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

CONFIG_DIR = Path(__file__).parent / "configs"
MODALITIES = {"audio_video": ("audio", "video"), "video": ("video",), "audio": ("audio",)}


# ---------------------------------------------------------------------------------------------
# Config.


def config_to_json(cfg, path: str | Path | None = None) -> str:
    """A config dataclass as JSON text, also written to ``path`` if given."""
    text = json.dumps(dataclasses.asdict(cfg), indent=4) + "\n"
    if path is not None:
        Path(path).write_text(text)
    return text


def config_from_json(cls, source: str | Path):
    """A config dataclass from JSON text (a str starting with ``{``) or a file; unknown keys
    are an error."""
    text = (
        source
        if isinstance(source, str) and source.lstrip().startswith("{")
        else Path(source).read_text()
    )
    spec = json.loads(text)
    unknown = set(spec) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**spec)


@dataclass(frozen=True)
class ModelConfig:
    """BMT's sizes. Special ids follow ``bmhrl.data`` (pad 0, start 1, end 2).

    ``vocab_size`` comes from the training vocabulary: ``ModelConfig.named("full",
    vocab_size=len(vocab))``; the full JSON leaves it 0 and :class:`BMT` refuses that."""

    modalities: str = "audio_video"  # "audio_video" | "video" | "audio"
    d_video: int = 1024  # I3D width (RGB + flow summed)
    d_audio: int = 128  # VGGish width
    d_model: int = 1024  # attention's internal width (BMT's d_model)
    d_word: int = 300  # word-vector width (GloVe 840B.300d)
    d_caption: int | None = None  # caption stream width (BMT's d_model_caps); None: d_word
    d_ff: int | None = None  # FFN hidden width; None: 4x each stream's width, as BMT
    # How the decoder joins its audio and video cross-attentions: "bridge" is BMT's
    # LayerNorm-Linear-ReLU over the two residual streams (no residual around it); "mean" adds
    # their average to the caption stream, a residual (see DecoderLayer).
    fusion: str = "bridge"
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    vocab_size: int = 0
    max_len: int = 30  # most words a decoder writes (BMT's max_len)
    pad_id: int = 0
    start_id: int = 1
    end_id: int = 2

    def __post_init__(self) -> None:
        if self.modalities not in MODALITIES:
            raise ValueError(
                f"modalities must be one of {sorted(MODALITIES)}, got {self.modalities!r}"
            )
        if self.fusion not in ("bridge", "mean"):
            raise ValueError(f"fusion must be 'bridge' or 'mean', got {self.fusion!r}")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def streams(self) -> tuple[str, ...]:
        """The encoded modalities, audio first (BMT concatenates the audio side first)."""
        return MODALITIES[self.modalities]

    @property
    def caption_width(self) -> int:
        return self.d_caption or self.d_word

    def width(self, stream: str) -> int:
        return {"audio": self.d_audio, "video": self.d_video, "caption": self.caption_width}[stream]

    def ff_width(self, stream: str) -> int:
        return self.d_ff or 4 * self.width(stream)

    def to_json(self, path: str | Path | None = None) -> str:
        return config_to_json(self, path)

    @classmethod
    def from_json(cls, source: str | Path) -> ModelConfig:
        return config_from_json(cls, source)

    @classmethod
    def named(cls, name: str, **overrides) -> ModelConfig:
        """``configs/<name>.json`` ("tiny", "full") with some fields replaced."""
        path = CONFIG_DIR / f"{name}.json"
        if not path.is_file():
            names = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
            raise ValueError(f"unknown config {name!r}; have {names}")
        return dataclasses.replace(cls.from_json(path), **overrides)


# ---------------------------------------------------------------------------------------------
# Building blocks.


def positional_encoding(
    length: int, dim: int, offset: int = 0, device: torch.device | None = None
) -> Tensor:
    """(length, dim) sinusoids for positions offset..offset+length-1, BMT's variant: dim j is
    sin (j even) or cos (j odd) of pos / 10000^(j/dim) (Vaswani et al. use 2*floor(j/2)/dim)."""
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    j = torch.arange(dim, device=device)
    angle = pos / 10000 ** (j / dim)  # (length, dim)
    return torch.where(j % 2 == 0, angle.sin(), angle.cos())


def key_padding(mask: Tensor) -> Tensor:
    """(B, S) bool, True = real row -> (B, 1, 1, S), broadcast over heads and queries."""
    return mask[:, None, None, :]


class Attention(nn.Module):
    """BMT's MultiheadedAttention: queries of width d_q attend keys/values of width d_kv.

    Q, K, V are projected into d_model (split over heads) and the result back to d_q, so a
    128-d audio stream can attend a 1024-d video stream and stay 128-d."""

    def __init__(self, d_q: int, d_kv: int, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_q, d_model)
        self.k = nn.Linear(d_kv, d_model)
        self.v = nn.Linear(d_kv, d_model)
        self.out = nn.Linear(d_model, d_q)

    def _split(self, x: Tensor) -> Tensor:
        b, s, d = x.shape
        return x.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # (B, H, S, d_model/H)

    def keys_values(self, source: Tensor) -> tuple[Tensor, Tensor]:
        """source (B, S, d_kv) -> keys, values (B, H, S, d_model/H); cacheable."""
        return self._split(self.k(source)), self._split(self.v(source))

    def forward(
        self,
        x: Tensor,
        source: Tensor | None = None,
        mask: Tensor | None = None,
        kv: tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x (B, L, d_q) attends ``source`` (B, S, d_kv), or precomputed ``kv``; mask is a
        bool (broadcastable to (B, H, L, S)), True = may attend. Returns (B, L, d_q)."""
        k, v = kv if kv is not None else self.keys_values(source)
        y = F.scaled_dot_product_attention(self._split(self.q(x)), k, v, attn_mask=mask)
        y = F.dropout(y, self.dropout, self.training)  # BMT drops the output, not the weights
        b, _, length, _ = y.shape
        return self.out(y.transpose(1, 2).reshape(b, length, -1))  # (B, L, d_q)


def feed_forward(width: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, width)
    )


# ---------------------------------------------------------------------------------------------
# Encoder.


class EncoderLayer(nn.Module):
    """Per stream: x += SelfAtt(LN x); x += CrossAtt(LN x, other stream); x += FFN(LN x).

    The two cross-attentions run in parallel on the self-attended streams, and their keys come
    from the other stream's residual (not normalised), as in BMT. One stream: no cross step."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.streams = cfg.streams
        w = {m: cfg.width(m) for m in self.streams}
        att = {m: Attention(w[m], w[m], cfg.d_model, cfg.heads, cfg.dropout) for m in w}
        self.self_att = nn.ModuleDict(att)
        self.norm_self = nn.ModuleDict({m: nn.LayerNorm(w[m]) for m in w})
        if len(self.streams) == 2:
            a, v = self.streams
            self.other = {a: v, v: a}
            self.cross_att = nn.ModuleDict(
                {
                    m: Attention(w[m], w[o], cfg.d_model, cfg.heads, cfg.dropout)
                    for m, o in self.other.items()
                }
            )
            self.norm_cross = nn.ModuleDict({m: nn.LayerNorm(w[m]) for m in w})
        self.ff = nn.ModuleDict({m: feed_forward(w[m], cfg.ff_width(m), cfg.dropout) for m in w})
        self.norm_ff = nn.ModuleDict({m: nn.LayerNorm(w[m]) for m in w})
        self.drop = nn.Dropout(cfg.dropout)

    def _self_attend(self, m: str, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm_self[m](x)
        return x + self.drop(self.self_att[m](h, h, key_padding(mask)))

    def forward(self, xs: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        """xs: stream -> (B, S_m, d_m); masks: stream -> (B, S_m) bool. Same shapes out."""
        xs = {m: self._self_attend(m, x, masks[m]) for m, x in xs.items()}
        if len(xs) == 2:
            xs = {
                m: x
                + self.drop(
                    self.cross_att[m](
                        self.norm_cross[m](x), xs[self.other[m]], key_padding(masks[self.other[m]])
                    )
                )
                for m, x in xs.items()
            }  # both read the pre-cross streams
        return {m: x + self.drop(self.ff[m](self.norm_ff[m](x))) for m, x in xs.items()}


class BiModalEncoder(nn.Module):
    """N encoder layers, then a LayerNorm per stream. Bi-modal, it returns Av (audio that
    attended video) and Va (video that attended audio); with one modality, that stream encoded
    (the other is None).

    The final norms depart from BMT, whose pre-LN stack hands its un-normalised residual
    stream to the decoder. There the decoder's cross-attention outputs come out about ten
    times larger than the caption stream (std 6.5 against 0.7 on the synthetic features), and
    BMT's bridge, which LayerNorms the concatenated streams and has no residual, then loses
    the words: the tiny bi-modal warm start stayed at unigram accuracy (0.19 after 100 steps,
    against 0.35 with the norms; single-stream models, without a bridge, learn either way)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.layers))
        self.norms = nn.ModuleDict({m: nn.LayerNorm(cfg.width(m)) for m in cfg.streams})

    def forward(self, xs: dict[str, Tensor], masks: dict[str, Tensor]) -> dict[str, Tensor]:
        for layer in self.layers:
            xs = layer(xs, masks)
        return {m: self.norms[m](x) for m, x in xs.items()}


class Memory(NamedTuple):
    """The encoder's output, computed once per batch and reused by every decoding step.

    ``av`` (B, Sa, d_audio): audio after attending video (audio-only: the encoded audio);
    ``va`` (B, Sv, d_video): video after attending audio (video-only: the encoded video).
    Masks (B, S) bool, True = a real feature row. An absent modality is None throughout."""

    av: Tensor | None
    av_mask: Tensor | None
    va: Tensor | None
    va_mask: Tensor | None

    def streams(self) -> dict[str, tuple[Tensor, Tensor]]:
        """stream name -> (features, mask) for the modalities present, audio first."""
        out = {}
        if self.av is not None:
            out["audio"] = (self.av, self.av_mask)
        if self.va is not None:
            out["video"] = (self.va, self.va_mask)
        return out

    @property
    def batch_size(self) -> int:
        return next(iter(self.streams().values()))[0].shape[0]

    @property
    def device(self) -> torch.device:
        return next(iter(self.streams().values()))[0].device

    def repeat_interleave(self, n: int) -> Memory:
        """Each sample n times in a row (B*n rows): for beams or several samples per video."""
        return Memory(*(None if t is None else t.repeat_interleave(n, dim=0) for t in self))


# ---------------------------------------------------------------------------------------------
# Decoder.


@dataclass
class LayerCache:
    """One decoder layer's reusable tensors: cross-attention keys/values of the memory
    (computed once) and self-attention keys/values of the tokens decoded so far."""

    cross: dict[str, tuple[Tensor, Tensor]]  # stream -> keys, values (B, H, S_m, d_model/H)
    k: Tensor | None = None  # (B, H, t, d_model/H)
    v: Tensor | None = None


@dataclass
class DecoderCache:
    """What incremental decoding keeps between steps (see :meth:`BMT.init_cache`)."""

    layers: list[LayerCache]
    length: int = 0  # tokens decoded so far = position of the next token

    def reorder(self, rows: Tensor) -> None:
        """Keep self-attention rows ``rows`` (B',) (beam search). The cross keys/values are not
        touched: callers only move rows between beams of the same sample, whose memory is equal."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[rows], layer.v[rows]


class DecoderLayer(nn.Module):
    """c += SelfAtt(LN c, causal); c_m = c + CrossAtt_m(LN_m c, memory_m) for each stream;
    bi-modal: c = ReLU(Dropout(Linear(LN [c_audio; c_video]))) (BMT's bridge) or
    c = (c_audio + c_video) / 2 (``fusion="mean"``), else c = c_m; c += FFN(LN c).

    The bridge has no residual: the words reach the next layer only through it. At tiny scale
    that does not train (greedy captions of a 300-step bi-modal warm start scored METEOR 3.6,
    against 20.3 audio-only), so the tiny config uses the mean; the full config keeps BMT's
    bridge."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.caption_width
        self.self_att = Attention(d, d, cfg.d_model, cfg.heads, cfg.dropout)
        self.norm_self = nn.LayerNorm(d)
        self.cross_att = nn.ModuleDict(
            {
                m: Attention(d, cfg.width(m), cfg.d_model, cfg.heads, cfg.dropout)
                for m in cfg.streams
            }
        )
        self.norm_cross = nn.ModuleDict({m: nn.LayerNorm(d) for m in cfg.streams})
        n = len(cfg.streams)
        self.bridge = (
            nn.Sequential(
                nn.LayerNorm(n * d), nn.Linear(n * d, d), nn.Dropout(cfg.dropout), nn.ReLU()
            )
            if n > 1 and cfg.fusion == "bridge"
            else None
        )
        self.ff = feed_forward(d, cfg.ff_width("caption"), cfg.dropout)
        self.norm_ff = nn.LayerNorm(d)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        c: Tensor,
        memory: dict[str, tuple[Tensor, Tensor]],
        causal: Tensor | None,
        cache: LayerCache | None = None,
    ) -> Tensor:
        """c (B, l, d_caption): the new tokens; causal (l, t + l) bool or None; with a cache,
        earlier tokens' keys/values are read from it and the new ones appended."""
        h = self.norm_self(c)
        k, v = self.self_att.keys_values(h)  # (B, H, l, d_model/H)
        if cache is not None:
            if cache.k is not None:
                k, v = torch.cat([cache.k, k], 2), torch.cat([cache.v, v], 2)  # (B, H, t+l, .)
            cache.k, cache.v = k, v
        c = c + self.drop(self.self_att(h, mask=causal, kv=(k, v)))
        fused = []
        for m, (source, mask) in memory.items():
            kv = cache.cross[m] if cache is not None else self.cross_att[m].keys_values(source)
            att = self.cross_att[m](self.norm_cross[m](c), mask=key_padding(mask), kv=kv)
            fused.append(c + self.drop(att))  # (B, l, d_caption)
        if len(fused) == 1:
            c = fused[0]
        elif self.bridge is not None:
            c = self.bridge(torch.cat(fused, -1))  # (B, l, d_caption) <- (B, l, 2 d_caption)
        else:
            c = (fused[0] + fused[1]) / 2
        return c + self.drop(self.ff(self.norm_ff(c)))


class Decoder(nn.Module):
    """N decoder layers and the generator: (B, l, d_caption) -> (B, l, V) log-probabilities."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))
        self.generator = nn.Linear(cfg.caption_width, cfg.vocab_size)

    def hidden(
        self,
        c: Tensor,
        memory: dict[str, tuple[Tensor, Tensor]],
        causal: Tensor | None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        """(B, l, d_caption) the last layer's states, before the generator (BMHRL's worker and
        manager read them)."""
        for i, layer in enumerate(self.layers):
            c = layer(c, memory, causal, cache.layers[i] if cache is not None else None)
        return c

    def forward(
        self,
        c: Tensor,
        memory: dict[str, tuple[Tensor, Tensor]],
        causal: Tensor | None,
        cache: DecoderCache | None = None,
    ) -> Tensor:
        return F.log_softmax(self.generator(self.hidden(c, memory, causal, cache)), dim=-1)


# ---------------------------------------------------------------------------------------------
# The model.


class BMT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= max(cfg.pad_id, cfg.start_id, cfg.end_id):
            raise ValueError(
                f"vocab_size {cfg.vocab_size} is too small; set it from the "
                "vocabulary, e.g. ModelConfig.named('full', vocab_size=len(vocab))"
            )
        self.cfg = cfg
        self.word_embedding = nn.Embedding(cfg.vocab_size, cfg.d_word)
        self.word_proj = (
            nn.Sequential(nn.Linear(cfg.d_word, cfg.caption_width), nn.ReLU())
            if cfg.caption_width != cfg.d_word
            else nn.Identity()
        )
        self.encoder = BiModalEncoder(cfg)
        self.decoder = Decoder(cfg)
        self.drop = nn.Dropout(cfg.dropout)
        for p in self.parameters():  # BMT: xavier-uniform for every matrix
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def load_embeddings(self, matrix: Tensor, freeze: bool = True) -> None:
        """Copy (vocab_size, d_word) word vectors (GloVe; BMT keeps them frozen) in place, so
        optimisers built before still hold the same parameter."""
        weight = self.word_embedding.weight
        if tuple(matrix.shape) != tuple(weight.shape):
            raise ValueError(f"embedding matrix {tuple(matrix.shape)} != {tuple(weight.shape)}")
        with torch.no_grad():
            weight.copy_(matrix)
        weight.requires_grad_(not freeze)

    def _position(self, x: Tensor, offset: int = 0) -> Tensor:
        """x (B, S, D) + positions offset.. , then dropout (BMT's PositionalEncoder)."""
        pe = positional_encoding(x.shape[1], x.shape[2], offset, x.device).to(x.dtype)
        return self.drop(x + pe)

    def encode(
        self,
        video: Tensor | None,
        video_mask: Tensor | None,
        audio: Tensor | None,
        audio_mask: Tensor | None,
    ) -> Memory:
        """video (B, Sv, d_video), audio (B, Sa, d_audio), masks (B, S) bool (True = real row;
        None = all real). A modality the config does not use may be None. Every sample needs
        at least one real row per used modality (an all-padding row would attend nothing)."""
        given = {"audio": (audio, audio_mask), "video": (video, video_mask)}
        xs, masks = {}, {}
        for m in self.cfg.streams:
            x, mask = given[m]
            if x is None:
                raise ValueError(f"modalities={self.cfg.modalities!r} needs {m} features")
            xs[m] = self._position(x)
            masks[m] = (
                torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
                if mask is None
                else mask.bool()
            )
        out = self.encoder(xs, masks)
        return Memory(out.get("audio"), masks.get("audio"), out.get("video"), masks.get("video"))

    def embed_words(self, tokens: Tensor, offset: int = 0) -> Tensor:
        """tokens (B, l) -> (B, l, d_caption): vectors (projected if d_word differs), scaled by
        sqrt(d_caption) as BMT's VocabularyEmbedder, plus positions offset.. ."""
        c = self.word_proj(self.word_embedding(tokens)) * math.sqrt(self.cfg.caption_width)
        return self._position(c, offset)

    def init_cache(self, memory: Memory) -> DecoderCache:
        """An empty cache for incremental decoding, with every layer's cross-attention keys and
        values of ``memory`` computed now, once."""
        streams = memory.streams()
        return DecoderCache(
            [
                LayerCache(
                    {
                        m: layer.cross_att[m].keys_values(source)
                        for m, (source, _) in streams.items()
                    }
                )
                for layer in self.decoder.layers
            ]
        )

    def decode(
        self,
        memory: Memory,
        tokens: Tensor,
        cache: DecoderCache | None = None,
        return_hidden: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """tokens (B, l) -> (B, l, V) log p(next word | words so far, memory).

        Without a cache, tokens is the whole prefix (teacher forcing: ``[start, w1, ..]``).
        With one, tokens are the next l tokens after the ``cache.length`` already decoded;
        the cache is updated. Only causal masking: captions are right-padded, so padding
        never precedes a real token (its own outputs are ignored by the loss).
        ``return_hidden``: (log-probs, (B, l, d_caption) decoder states before the generator),
        for BMHRL's agent, which builds on those states."""
        t = cache.length if cache is not None else 0
        length = tokens.shape[1]
        causal = (
            None
            if length == 1
            else torch.ones(length, t + length, dtype=torch.bool, device=tokens.device).tril(t)
        )  # (l, t+l)
        hidden = self.decoder.hidden(self.embed_words(tokens, t), memory.streams(), causal, cache)
        out = F.log_softmax(self.decoder.generator(hidden), dim=-1)
        if cache is not None:
            cache.length += length
        return (out, hidden) if return_hidden else out

    def forward(
        self,
        video: Tensor | None,
        video_mask: Tensor | None,
        audio: Tensor | None,
        audio_mask: Tensor | None,
        tokens: Tensor,
    ) -> Tensor:
        """Teacher forcing: tokens (B, L) = ``[start, w1, .., wn]`` -> (B, L, V) log-probs of
        ``[w1, .., wn, end]``."""
        return self.decode(self.encode(video, video_mask, audio, audio_mask), tokens)


# ---------------------------------------------------------------------------------------------
# Loss.


def label_smoothed_kl(
    logprobs: Tensor, target: Tensor, pad_id: int, smoothing: float = 0.7
) -> Tensor:
    """BMT's LabelSmoothing: KL(q || p) per non-pad token, averaged over those tokens.

    logprobs (B, L, V), target (B, L). q puts 1 - smoothing on the true word, smoothing/(V-2)
    on every other word except pad, 0 on pad (V-2: the mass is spread over vocab minus {pad,
    true word}). Pad targets are ignored. Normalisation: BMT sums the KL over the batch
    (``F.kl_div(..., reduction="sum")``) and its training loop divides by the number of
    non-pad target tokens; the same here, so the value is a per-token mean that does not
    depend on batch size or padding. It includes q's entropy, so its minimum (p = q) is 0."""
    v = logprobs.shape[-1]
    keep = target != pad_id  # (B, L)
    lp, tgt = logprobs[keep].float(), target[keep]  # (N, V), (N,); float32 under autocast
    q = torch.full_like(lp, smoothing / (v - 2))
    q.scatter_(1, tgt[:, None], 1.0 - smoothing)
    q[:, pad_id] = 0.0
    return F.kl_div(lp, q, reduction="sum") / keep.sum().clamp(min=1)


# ---------------------------------------------------------------------------------------------
# Decoding. All three take the memory of one ``model.encode`` call: the encoder runs once per
# batch. (BMT's greedy decoder called the whole model, encoder included, once per word.)


def _finish(word: Tensor, done: Tensor, cfg: ModelConfig) -> tuple[Tensor, Tensor]:
    """Pad the words of captions already finished; (word, done after this word)."""
    word = word.masked_fill(done, cfg.pad_id)
    return word, done | (word == cfg.end_id)


@torch.no_grad()
def greedy_decode(model: BMT, memory: Memory, max_len: int | None = None) -> Tensor:
    """(B, T) the most likely word at each step, T <= max_len (default ``cfg.max_len``), start
    token not included, end included, pad after it.

    The encoder ran once (``memory``), and decoder self-attention keys/values are cached, so a
    step costs one token's decoder pass; BMT re-ran the encoder and the decoder over the whole
    prefix for every word. Call ``model.eval()`` first."""
    max_len = max_len or model.cfg.max_len
    cfg, b = model.cfg, memory.batch_size
    cache = model.init_cache(memory)
    device = memory.device
    word = torch.full((b,), cfg.start_id, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    out = []
    for _ in range(max_len):
        logp = model.decode(memory, word[:, None], cache)[:, -1]  # (B, V)
        word, done = _finish(logp.argmax(-1), done, cfg)
        out.append(word)
        if done.all():
            break
    return torch.stack(out, 1)


@torch.no_grad()
def beam_decode(
    model: BMT,
    memory: Memory,
    beam_size: int,
    max_len: int | None = None,
    length_penalty: float = 0.0,
) -> Tensor:
    """(B, T) the best of ``beam_size`` beams, same layout as :func:`greedy_decode`.

    Beams are ranked by summed log-probability while searching; a finished beam stays in the
    beam, extended by pad at no cost. The final pick divides each beam's score by
    length^length_penalty (length counts the end token): 0 (default) is the plain sequence
    log-probability, > 0 favours longer captions. BMT had no beam search (greedy only).
    The encoder ran once; the memory is repeated per beam and its cross keys/values cached."""
    max_len = max_len or model.cfg.max_len
    cfg, b, k = model.cfg, memory.batch_size, beam_size
    memory = memory.repeat_interleave(k)  # B*k rows, the beams of sample i at i*k .. i*k+k-1
    cache = model.init_cache(memory)
    device = memory.device
    word = torch.full((b * k,), cfg.start_id, dtype=torch.long, device=device)
    scores = torch.zeros(b, k, device=device)
    scores[:, 1:] = -math.inf  # all beams start equal: keep one so the first step fans out
    done = torch.zeros(b * k, dtype=torch.bool, device=device)
    lengths = torch.zeros(b * k, dtype=torch.long, device=device)
    out = torch.empty(b * k, 0, dtype=torch.long, device=device)
    for _ in range(max_len):
        logp = model.decode(memory, word[:, None], cache)[:, -1]  # (B*k, V)
        v = logp.shape[-1]
        pad_only = torch.full_like(logp, -math.inf)
        pad_only[:, cfg.pad_id] = 0.0
        logp = torch.where(done[:, None], pad_only, logp)  # finished: pad, score unchanged
        scores, flat = (scores.view(-1, 1) + logp).view(b, k * v).topk(k, dim=1)  # (B, k)
        rows = (torch.arange(b, device=device)[:, None] * k + flat // v).view(-1)  # parents
        word = (flat % v).view(-1)  # (B*k,)
        was_done = done[rows]
        lengths = lengths[rows] + (~was_done).long()
        done = was_done | (word == cfg.end_id)
        out = torch.cat([out[rows], word[:, None]], 1)  # (B*k, t+1)
        cache.reorder(rows)
        if done.all():
            break
    ranked = scores.view(-1) / lengths.clamp(min=1).float() ** length_penalty  # (B*k,)
    best = torch.arange(b, device=device) * k + ranked.view(b, k).argmax(1)  # (B,)
    return out[best, : int(lengths[best].max())]


def sample(
    model: BMT,
    memory: Memory,
    max_len: int | None = None,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Captions sampled word by word, for policy-gradient training; gradients flow (the caller
    chooses ``no_grad`` or not).

    Returns tokens (B, T) (layout of :func:`greedy_decode`) and logprobs (B, T): the
    log-probability of each sampled word under the distribution it was drawn from
    (softmax(log p / temperature), which is the model's own at temperature 1), 0 after the end
    token. The encoder ran once (``memory``); decoder keys/values are cached."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    max_len = max_len or model.cfg.max_len
    cfg, b = model.cfg, memory.batch_size
    cache = model.init_cache(memory)
    device = memory.device
    word = torch.full((b,), cfg.start_id, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    words, logprobs = [], []
    for _ in range(max_len):
        logp = model.decode(memory, word[:, None], cache)[:, -1]  # (B, V)
        if temperature != 1.0:
            logp = F.log_softmax(logp / temperature, dim=-1)
        drawn = torch.multinomial(logp.detach().exp(), 1, generator=generator)  # (B, 1)
        lp = logp.gather(1, drawn).squeeze(1).masked_fill(done, 0.0)  # (B,)
        word, done = _finish(drawn.squeeze(1), done, cfg)
        words.append(word)
        logprobs.append(lp)
        if done.all():
            break
    return torch.stack(words, 1), torch.stack(logprobs, 1)
