"""MERLOT's networks in Flax (linen): a per-frame image encoder and one joint transformer.

The image encoder is a ResNet stem (GroupNorm, weight-standardised convolutions) feeding a ViT
with two CLS slots; its patch grid is average-pooled 2x2. CLS[0] goes into the joint encoder
with the pooled patches, CLS[1] is the frame's contrastive embedding. The joint encoder reads
``[every frame's tokens] + [every segment's text tokens]`` (not interleaved). Frames carry a
learned *frame index* embedding (``img_idx``): indices ``0..S-1`` say where a frame sits, indices
``SHUFFLED_OFFSET + k`` say nothing about it, which is how temporal reordering hides the order
and how story ordering asks for it. The same transformer also runs on text alone (the
contrastive and attention-masking passes), as in the paper.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

CONFIGS = Path(__file__).with_name("configs")


@dataclass(frozen=True)
class ModelConfig:
    """Every size of the model; ``configs/*.json`` hold the named ones (tiny, base)."""

    vocab_size: int
    image_size: tuple[int, int] = (64, 64)  # (H, W) pixels
    stem_width: int = 16
    stem_stride: int = 1
    stages: tuple[tuple[int, int, int], ...] = (
        (16, 1, 2),
        (32, 1, 2),
        (64, 1, 2),
    )  # width, blocks, stride
    vit_width: int = 64
    vit_layers: int = 2
    vit_heads: int = 4
    pool: int = 2  # patch grid average-pooled pool x pool after the ViT
    hidden: int = 64
    layers: int = 3
    heads: int = 4
    mlp_ratio: int = 4
    text_len: int = 12  # tokens per segment
    max_segments: int = 8
    dtype: str = "float32"  # compute dtype (bfloat16 on TPU/GPU); parameters stay float32

    @property
    def grid(self) -> tuple[int, int]:
        stride = self.stem_stride
        for _, _, s in self.stages:
            stride *= s
        return self.image_size[0] // stride, self.image_size[1] // stride

    @property
    def frame_tokens(self) -> int:
        """Tokens per frame in the joint encoder: pooled patches + CLS[0]."""
        gh, gw = self.grid
        return (gh // self.pool) * (gw // self.pool) + 1

    @classmethod
    def named(cls, name: str, **overrides) -> ModelConfig:
        path = CONFIGS / f"{name}.json"
        if not path.exists():
            known = sorted(p.stem for p in CONFIGS.glob("*.json"))
            raise ValueError(f"no MERLOT config {name!r} (known: {', '.join(known)})")
        values = {**json.loads(path.read_text()), **overrides}
        return cls(**_tuples(values))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls(**_tuples(json.loads(text)))


def _tuples(values: dict) -> dict:
    values = dict(values)
    values["image_size"] = tuple(values.get("image_size", (64, 64)))
    if "stages" in values:
        values["stages"] = tuple(tuple(s) for s in values["stages"])
    return values


def shuffled_offset(cfg: ModelConfig) -> int:
    """Where the 'order unknown' frame indices start: one named constant, used by reordering
    and story ordering alike (the TF release used 16 in one place and 64 in the other)."""
    return cfg.max_segments


# --- building blocks ---------------------------------------------------------------------------


class StdConv(nn.Conv):
    """Convolution with weight standardisation (BiT), which GroupNorm needs to train well."""

    def param(self, name, *args, **kwargs):
        p = super().param(name, *args, **kwargs)
        if name == "kernel":
            mean = p.mean(axis=(0, 1, 2), keepdims=True)
            p = (p - mean) / (p.std(axis=(0, 1, 2), keepdims=True) + 1e-5)
        return p


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, ReLU, 3x3 weight-standardised convs)."""

    width: int
    stride: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x):  # (N, H, W, C)
        groups = min(32, self.width // 4)
        y = nn.relu(nn.GroupNorm(groups, dtype=self.dtype)(x))
        shortcut = x
        if self.stride != 1 or x.shape[-1] != self.width:
            shortcut = StdConv(
                self.width, (1, 1), self.stride, use_bias=False, dtype=self.dtype, name="proj"
            )(y)
        y = StdConv(self.width, (3, 3), self.stride, use_bias=False, dtype=self.dtype)(y)
        y = nn.relu(nn.GroupNorm(groups, dtype=self.dtype)(y))
        y = StdConv(self.width, (3, 3), use_bias=False, dtype=self.dtype)(y)
        return shortcut + y


class Attention(nn.Module):
    """Multi-head self-attention that also returns its probabilities (MERLOT masks the tokens
    the text-only pass attends to most)."""

    heads: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, mask):  # x (B, N, D); mask (B, 1, 1, N) bool, True = attend
        d = x.shape[-1]
        qkv = nn.DenseGeneral((3, self.heads, d // self.heads), dtype=self.dtype, name="qkv")(x)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, N, H, Dh)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32) / jnp.sqrt(d // self.heads)
        if mask is not None:
            logits = jnp.where(mask, logits, jnp.finfo(jnp.float32).min)
        probs = jax.nn.softmax(logits, axis=-1)  # (B, H, N, N)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(self.dtype), v)
        return nn.DenseGeneral(d, axis=(-2, -1), dtype=self.dtype, name="out")(out), probs


class Block(nn.Module):
    heads: int
    mlp_ratio: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, mask):
        y, probs = Attention(self.heads, self.dtype)(nn.LayerNorm(dtype=self.dtype)(x), mask)
        x = x + y
        y = nn.LayerNorm(dtype=self.dtype)(x)
        y = nn.Dense(x.shape[-1] * self.mlp_ratio, dtype=self.dtype)(y)
        x = x + nn.Dense(x.shape[-1], dtype=self.dtype)(nn.gelu(y))
        return x, probs


class Transformer(nn.Module):
    """Pre-LN transformer. Returns the final states and the attention each token *receives*,
    summed over layers and averaged over heads and queries: (B, N)."""

    layers: int
    heads: int
    mlp_ratio: int
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x, valid):  # x (B, N, D); valid (B, N) bool
        mask = valid[:, None, None, :]
        received = jnp.zeros(x.shape[:2], jnp.float32)
        for i in range(self.layers):
            x, probs = Block(self.heads, self.mlp_ratio, self.dtype, name=f"layer{i}")(x, mask)
            weights = valid[:, None, :, None].astype(jnp.float32)  # only real queries count
            received += (probs * weights).sum(axis=2).mean(axis=1) / jnp.maximum(
                valid.sum(-1, keepdims=True), 1
            )
        return nn.LayerNorm(dtype=self.dtype)(x), received


class ImageEncoder(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, images):  # (N, H, W, 3), normalised pixels
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        x = StdConv(
            cfg.stem_width, (3, 3), cfg.stem_stride, use_bias=False, dtype=dtype, name="stem"
        )(images.astype(dtype))
        for s, (width, blocks, stride) in enumerate(cfg.stages):
            for b in range(blocks):
                x = ResBlock(width, stride if b == 0 else 1, dtype, name=f"stage{s}_{b}")(x)
        x = nn.relu(nn.GroupNorm(min(32, x.shape[-1] // 4), dtype=dtype)(x))
        x = nn.Dense(cfg.vit_width, dtype=dtype, name="to_vit")(x)  # 1x1 conv: (N, gh, gw, V)
        n, gh, gw, v = x.shape
        patches = x.reshape(n, gh * gw, v)
        patches += self.param("pos", nn.initializers.normal(0.02), (gh * gw, v))
        cls = jnp.broadcast_to(self.param("cls", nn.initializers.normal(0.02), (2, v)), (n, 2, v))
        tokens = jnp.concatenate([cls.astype(dtype), patches.astype(dtype)], axis=1)
        tokens, _ = Transformer(cfg.vit_layers, cfg.vit_heads, cfg.mlp_ratio, dtype, name="vit")(
            tokens, jnp.ones(tokens.shape[:2], bool)
        )
        grid = tokens[:, 2:].reshape(n, gh, gw, v)
        pooled = nn.avg_pool(grid, (cfg.pool, cfg.pool), (cfg.pool, cfg.pool))
        pooled = pooled.reshape(n, -1, v)  # (N, P-1, V)
        joint = nn.Dense(cfg.hidden, dtype=dtype, name="to_joint")(
            jnp.concatenate([tokens[:, :1], pooled], axis=1)
        )  # (N, P, D): CLS[0] + patches
        return joint, tokens[:, 1]  # CLS[1]: (N, V), the contrastive target


def mlp_head(features: int, hidden: int, dtype, name: str) -> nn.Module:
    return nn.Sequential(
        [
            nn.Dense(hidden, dtype=dtype),
            nn.gelu,
            nn.LayerNorm(dtype=dtype),
            nn.Dense(features, dtype=dtype),
        ],
        name=name,
    )


# --- the model -----------------------------------------------------------------------------------


class Merlot(nn.Module):
    """Call its methods through ``model.apply(params, ..., method=...)``; ``init_all`` touches
    every parameter so that one ``init`` builds them all."""

    cfg: ModelConfig

    def setup(self):
        cfg, dtype = self.cfg, jnp.dtype(self.cfg.dtype)
        self.images = ImageEncoder(cfg)
        self.embed = nn.Embed(cfg.vocab_size, cfg.hidden, name="embed")
        self.text_pos = self.param(
            "text_pos", nn.initializers.normal(0.02), (cfg.max_segments * cfg.text_len, cfg.hidden)
        )
        self.frame_index = nn.Embed(2 * cfg.max_segments, cfg.hidden, name="frame_index")
        self.grid_pos = self.param(
            "grid_pos", nn.initializers.normal(0.02), (cfg.frame_tokens, cfg.hidden)
        )
        self.encoder = Transformer(cfg.layers, cfg.heads, cfg.mlp_ratio, dtype)
        self.mlm_bias = self.param("mlm_bias", nn.initializers.zeros, (cfg.vocab_size,))
        self.text_proj = mlp_head(cfg.hidden, cfg.hidden, dtype, "text_proj")
        self.cls_to_hidden = nn.Dense(cfg.hidden, dtype=dtype, name="cls_to_hidden")
        self.frame_proj = mlp_head(cfg.hidden, cfg.hidden, dtype, "frame_proj")
        self.pair_text_frame = mlp_head(4, cfg.hidden, dtype, "pair_text_frame")
        self.pair_frame_frame = mlp_head(4, cfg.hidden, dtype, "pair_frame_frame")
        self.qa_head = mlp_head(1, cfg.hidden, dtype, "qa_head")

    def encode_frames(self, frames):
        """(B, S, H, W, 3) → joint-encoder tokens (B, S, P, D) and contrastive CLS (B, S, V)."""
        b, s = frames.shape[:2]
        joint, cls = self.images(frames.reshape(b * s, *frames.shape[2:]))
        return joint.reshape(b, s, *joint.shape[1:]), cls.reshape(b, s, -1)

    def _text(self, text):  # (B, S, L) ids → (B, S*L, D), valid (B, S*L)
        b, s, length = text.shape
        flat = text.reshape(b, s * length)
        return self.embed(flat) + self.text_pos[: s * length], flat != 0

    def text_only(self, text):
        """Text alone through the joint transformer: states (B, S, L, D) and the attention each
        token receives (B, S, L)."""
        x, valid = self._text(text)
        h, received = self.encoder(x, valid)
        return h.reshape(*text.shape, -1), received.reshape(text.shape)

    def joint(self, frame_tokens, frame_index, text):
        """Frames (B, S, P, D) with their indices (B, S), and text (B, S', L) → states of the
        frame tokens (B, S, P, D) and of the text (B, S', L, D)."""
        b, s, p, d = frame_tokens.shape
        v = frame_tokens + self.grid_pos + self.frame_index(frame_index)[:, :, None]
        t, t_valid = self._text(text)
        x = jnp.concatenate([v.reshape(b, s * p, d), t], axis=1)
        valid = jnp.concatenate([jnp.ones((b, s * p), bool), t_valid], axis=1)
        h, _ = self.encoder(x, valid)
        return h[:, : s * p].reshape(b, s, p, d), h[:, s * p :].reshape(*text.shape, d)

    def mlm_logits(self, text_states):  # (..., D) → (..., vocab): tied to the embedding
        return self.embed.attend(text_states) + self.mlm_bias

    def contrastive(self, text_start, frame_cls):
        """L2-normalised embeddings of segments' START states (..., D) and frames' CLS[1]."""
        t = self.text_proj(text_start)
        f = self.frame_proj(self.cls_to_hidden(frame_cls))
        return _l2(t), _l2(f)

    def pairs(self, a, b, kind: str):
        """4-way logits (different video, same segment, a before b, a after b) for every pair:
        a (B, S, D), b (B, S', D) → (B, S, S', 4)."""
        head = self.pair_text_frame if kind == "text_frame" else self.pair_frame_frame
        grid = jnp.concatenate(jnp.broadcast_arrays(a[:, :, None], b[:, None]), axis=-1)
        return head(grid)

    def qa_score(self, text_start):  # (..., D) → (...)
        return self.qa_head(text_start)[..., 0]

    def init_all(self, frames, text):
        tokens, cls = self.encode_frames(frames)
        index = jnp.broadcast_to(jnp.arange(frames.shape[1]), frames.shape[:2])
        v, t = self.joint(tokens, index, text)
        self.text_only(text)
        self.contrastive(t[:, :, 0], cls)
        self.pairs(t[:, :, 0], v[:, :, 0], "text_frame")
        self.pairs(v[:, :, 0], v[:, :, 0], "frame_frame")
        return self.mlm_logits(t), self.qa_score(t[:, :, 0])


def _l2(x):
    return x / jnp.linalg.norm(x.astype(jnp.float32), axis=-1, keepdims=True).astype(x.dtype).clip(
        1e-6
    )


def init_params(cfg: ModelConfig, rng: jax.Array, segments: int | None = None) -> dict:
    s = segments or min(cfg.max_segments, 5)
    frames = jnp.zeros((1, s, *cfg.image_size, 3), jnp.float32)
    text = jnp.ones((1, s, cfg.text_len), jnp.int32)
    return Merlot(cfg).init(rng, frames, text, method=Merlot.init_all)["params"]


def count_params(params) -> int:
    return sum(x.size for x in jax.tree_util.tree_leaves(params))
