"""ClipClassifier: a CLIP image tower without its projection and two MLP heads (Souček et al. 2022).

Every frame is classified on its own: the tower's pre-projection CLS feature (1024-d for
ViT-L/14) goes through two MLPs, Linear(width, hidden) -> ReLU -> Linear(hidden, out), giving

* state logits, 2K+1 classes: 2c = initial state of category c, 2c+1 = its end state, 2K = background;
* action logits, K+1 classes: c = the action of category c, K = background.

K categories, indexed in name order. The name -> index map is saved with every checkpoint (the
original code saves none, so a checkpoint could silently be read with another category order).

A model config is JSON data: the image part of an open_clip model config (``embed_dim``,
``quick_gelu``, ``vision_cfg``; no text tower is ever built) plus the heads' ``hidden`` width.
Tiny configs sit in ``configs/`` beside this file; full scale reads open_clip's built-in config
(``ViT-L-14-quickgelu`` has the keys of the patched OpenAI tower the paper used). Pretrained
weights come from a local file or an open_clip tag, always through :func:`read_state_dict`, which
loads safely (safetensors, or ``torch.load(weights_only=True)``) and never downloads by itself.
"""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import open_clip
import torch
from open_clip.model import _build_vision_tower
from open_clip.transformer import VisionTransformer
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

CONFIG_DIR = Path(__file__).parent / "configs"
FULL_ARCH = "ViT-L-14-quickgelu"
FULL_HIDDEN = 4096  # the paper's MLP width
WEIGHTS_FILE = "model.safetensors"
META_FILE = "classifier.json"
_TOWER_KEYS = ("embed_dim", "quick_gelu", "vision_cfg")


# ---------------------------------------------------------------------------------------------
# Configs and weights.


def tiny_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def resolve_config(arch: str | Mapping, hidden: int | None = None) -> dict:
    """A model config from a dict, a ``configs/<name>.json`` name or an open_clip model name.

    ``hidden`` overrides the config's own; a config without one (open_clip's) gets 4096."""
    if isinstance(arch, Mapping):
        spec = dict(arch)
    elif (CONFIG_DIR / f"{arch}.json").is_file():
        spec = json.loads((CONFIG_DIR / f"{arch}.json").read_text())
    elif (spec := open_clip.get_model_config(arch)) is None:
        raise ValueError(
            f"unknown model {arch!r}: not an open_clip model and not one of "
            f"{', '.join(tiny_names())} in {CONFIG_DIR}"
        )
    if "embed_dim" not in spec or "vision_cfg" not in spec:
        raise ValueError(f"model config needs 'embed_dim' and 'vision_cfg', got {sorted(spec)}")
    config = {"quick_gelu": False, **{k: copy.deepcopy(spec[k]) for k in _TOWER_KEYS if k in spec}}
    config["hidden"] = int(hidden if hidden is not None else spec.get("hidden", FULL_HIDDEN))
    return config


def build_tower(config: Mapping) -> VisionTransformer:
    """open_clip's own image-tower builder (what ``CLIP`` calls), then the projection dropped so
    the tower returns the ``width``-d CLS feature, as the paper's patched OpenAI tower does."""
    tower = _build_vision_tower(config["embed_dim"], config["vision_cfg"], config["quick_gelu"])
    if not isinstance(tower, VisionTransformer):
        raise TypeError(f"only ViT image towers are supported, got {type(tower).__name__}")
    tower.proj = None
    return tower


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file, loaded safely: safetensors, else ``torch.load`` with
    ``weights_only=True`` (OpenAI's TorchScript ``ViT-L-14.pt`` is refused: use the safetensors
    of open_clip's ``openai`` tag instead). Unwraps ``{"state_dict": ...}`` and ``module.``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        state = load_file(path, device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError) as e:
            raise ValueError(
                f"{path}: not loadable with weights_only=True ({e}); use a "
                f".safetensors or a plain state-dict checkpoint"
            ) from e
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise TypeError(f"{path}: expected a state dict, got {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def tower_state_dict(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The image tower's tensors, projection excluded: the ``visual.*`` part of a whole CLIP
    checkpoint (open_clip and OpenAI use the same ViT keys), or a bare tower's state dict."""
    if any(k.startswith("visual.") for k in state):
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
    return {k: v for k, v in state.items() if k != "proj"}


def pretrained_file(arch: str, pretrained: str | Path, cache_dir: str | None = None) -> Path:
    """A local checkpoint path as is; an open_clip tag (``openai``) resolved through open_clip's
    cache (offline with HF_HUB_OFFLINE=1: it must be there already)."""
    if Path(pretrained).is_file():
        return Path(pretrained)
    cfg = open_clip.get_pretrained_cfg(arch, str(pretrained)) if isinstance(arch, str) else {}
    if not cfg:
        raise ValueError(f"{pretrained!r} is neither a file nor an open_clip tag of {arch!r}")
    return Path(open_clip.download_pretrained(cfg, cache_dir=cache_dir))


def _mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, out))


# ---------------------------------------------------------------------------------------------
# The model.


class ClipClassifier(nn.Module):
    """Per-frame state and action classifier; see the module docstring for the class layout."""

    def __init__(self, config: Mapping, categories: Iterable[str]):
        super().__init__()
        self.config = resolve_config(config)
        self.categories = sorted(categories)
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            raise ValueError(f"categories must be distinct and non-empty, got {self.categories}")
        self.backbone = build_tower(self.config)
        width, k = self.backbone.transformer.width, len(self.categories)
        self.state_head = _mlp(width, self.config["hidden"], 2 * k + 1)
        self.action_head = _mlp(width, self.config["hidden"], k + 1)

    @property
    def num_categories(self) -> int:
        return len(self.categories)

    @property
    def category_index(self) -> dict[str, int]:
        """Category name -> c (state classes 2c, 2c+1; action class c)."""
        return {name: i for i, name in enumerate(self.categories)}

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.backbone.image_size)

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(N, 3, H, W) CLIP-normalised frames -> state (N, 2K+1) and action (N, K+1) logits."""
        features = self.backbone(frames)  # (N, width)
        return self.state_head(features), self.action_head(features)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, name_or_dict: str | Mapping, categories: Iterable[str], hidden: int | None = None
    ) -> ClipClassifier:
        """A randomly initialised model (tiny ones for tests come from ``configs/``)."""
        return cls(resolve_config(name_or_dict, hidden), categories)

    @classmethod
    def from_openai(
        cls,
        arch: str | Mapping = FULL_ARCH,
        pretrained: str | Path = "openai",
        *,
        categories: Iterable[str],
        hidden: int | None = None,
        cache_dir: str | None = None,
    ) -> ClipClassifier:
        """Pretrained CLIP image tower + fresh heads. ``pretrained`` is a local checkpoint (a whole
        CLIP or a bare tower; .safetensors, .pt, .bin) or an open_clip tag. Tiny configs go
        through the same path with a local file, which is how the tests cover it offline."""
        model = cls(resolve_config(arch, hidden), categories)
        state = tower_state_dict(read_state_dict(pretrained_file(arch, pretrained, cache_dir)))
        model.backbone.load_state_dict(state, strict=True)
        return model

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """``model.safetensors`` (all weights) + ``classifier.json`` (config and category map)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, folder / WEIGHTS_FILE, metadata={"format": "pt"})
        meta = {"config": self.config, "categories": self.category_index}
        (folder / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "cpu") -> ClipClassifier:
        """A model saved by :meth:`save`; the category map must be the name order it implies."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        index: dict[str, int] = meta["categories"]
        names = sorted(index)
        if [index[n] for n in names] != list(range(len(names))):
            raise ValueError(f"{folder / META_FILE}: category indices are not the name order")
        model = cls(meta["config"], names)
        model.load_state_dict(load_file(folder / WEIGHTS_FILE, device="cpu"), strict=True)
        return model.to(device)


# ---------------------------------------------------------------------------------------------
# Outputs and optimisation.


def category_probs(
    state_logits: Tensor, action_logits: Tensor, category: int | Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(p_init, p_action, p_end) of the video's category, softmax over *all* classes first.

    Logits (..., T, 2K+1) and (..., T, K+1); ``category`` an int or a tensor of the leading
    shape (...); outputs (..., T) in at least float32 (the constraint works on their logs)."""
    dtype = torch.promote_types(state_logits.dtype, torch.float32)
    p_state = state_logits.softmax(-1, dtype=dtype)  # (..., T, 2K+1)
    p_action = action_logits.softmax(-1, dtype=dtype)  # (..., T, K+1)
    c = torch.as_tensor(category, device=p_state.device)[..., None, None]  # (..., 1, 1)
    c = c.expand(*p_state.shape[:-1], 1)  # (..., T, 1)
    return (
        p_state.gather(-1, 2 * c).squeeze(-1),
        p_action.gather(-1, c).squeeze(-1),
        p_state.gather(-1, 2 * c + 1).squeeze(-1),
    )


def param_groups(model: ClipClassifier) -> dict[str, list[nn.Parameter]]:
    """Backbone and heads: the paper trains them with different optimisers."""
    heads = [*model.state_head.parameters(), *model.action_head.parameters()]
    return {"backbone": list(model.backbone.parameters()), "heads": heads}


def make_optimizers(
    model: ClipClassifier,
    train_backbone: bool,
    *,
    lr: float = 1e-4,
    momentum: float = 0.9,
    weight_decay: float = 1e-3,
    lr_backbone: float = 1e-5,
    weight_decay_backbone: float = 0.0,
) -> list[torch.optim.Optimizer]:
    """Heads: SGD (lr 1e-4, momentum 0.9, wd 1e-3). Backbone: AdamW (lr 1e-5; wd 0, the original
    code's default) when trained, else frozen (``requires_grad=False``) and in no optimiser.
    The paper adds a cosine schedule with 5 warm-up epochs on each optimiser."""
    groups = param_groups(model)
    for p in groups["backbone"]:
        p.requires_grad_(train_backbone)
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(groups["heads"], lr=lr, momentum=momentum, weight_decay=weight_decay)
    ]
    if train_backbone:
        optimizers.append(
            torch.optim.AdamW(
                groups["backbone"], lr=lr_backbone, weight_decay=weight_decay_backbone
            )
        )
    return optimizers
