"""Which parts of the video BLIP-2 train: the paper's switches.

Always: the Q-Former, its queries, the ViT's last layer norm (LAVIS's ``ln_vision``) and the
projection into the LLM. ``train_vit``: the whole ViT too (the paper found it hurts).
``lora``: LoRA adapters (r=8, alpha=16, dropout 0.05 on the attention query and value
projections) in the otherwise frozen LLM, injected in place with peft so the model keeps its
class and ``generate``. Everything else is frozen for real: ``requires_grad=False``.
"""

from __future__ import annotations

from peft import LoraConfig, inject_adapter_in_model

from .model import VideoBlip2

LORA_TARGETS = {"t5": ["q", "v"], "opt": ["q_proj", "v_proj"], "llama": ["q_proj", "v_proj"]}


def configure(
    model: VideoBlip2,
    *,
    train_vit: bool = False,
    lora: bool = False,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.05,
) -> list[str]:
    """Set ``requires_grad`` per the switches; returns the trainable parameter names."""
    blip2 = model.blip2
    if lora:
        kind = blip2.config.text_config.model_type
        if kind not in LORA_TARGETS:
            raise ValueError(f"no LoRA targets known for LLM type {kind!r}")
        config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=LORA_TARGETS[kind],
        )
        inject_adapter_in_model(config, blip2.language_model)
    for name, p in model.named_parameters():
        p.requires_grad = (
            name.startswith(
                (
                    "blip2.qformer.",
                    "blip2.query_tokens",
                    "blip2.language_projection.",
                    "blip2.vision_model.post_layernorm.",
                )
            )
            or (train_vit and name.startswith("blip2.vision_model."))
            or (lora and "lora_" in name)
        )
    return [n for n, p in model.named_parameters() if p.requires_grad]


def trainable_state(model: VideoBlip2) -> dict:
    """The trainable tensors only: what a finetuning checkpoint holds (as in the paper)."""
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
