"""Making a :class:`VideoBlip2`: tiny ones from the JSON configs beside this file (which set the
ViT's ``initializer_range``: transformers' 1e-10 assumes pretrained weights will be loaded over
it), full ones from pretrained checkpoints (a hub id such as ``Salesforce/blip2-flan-t5-xl`` or
a local folder).

Both paths end in the same object; a saved tiny model loads back through the pretrained path,
which is how the tests exercise ``from_pretrained`` without a network.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from peft.tuners.lora import LoraLayer
from transformers import AutoTokenizer, Blip2Config, Blip2ForConditionalGeneration

from .model import VideoBlip2

CONFIG_DIR = Path(__file__).parent / "configs"
PROMPT_FILE = "video_prompt.json"
# The paper's prompts: FLAN-T5 "a video of"; OPT none.
PRETRAINED_PROMPTS = {"t5": "a video of", "opt": ""}


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # organisation/name


def tiny_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def tiny_config(name: str, vocab_size: int, pad: int, eos: int) -> tuple[Blip2Config, str]:
    """The Blip2Config of ``configs/<name>.json`` for a tokenizer with these ids, and its prompt."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.exists():
        raise ValueError(f"no tiny config {name!r} (have: {', '.join(tiny_names())})")
    spec = json.loads(path.read_text())
    text = {
        **spec["text_config"],
        "vocab_size": vocab_size,
        "pad_token_id": pad,
        "eos_token_id": eos,
    }
    if text["model_type"] == "t5":
        text["decoder_start_token_id"] = pad
    else:
        text["bos_token_id"] = eos
    config = Blip2Config(
        vision_config=spec["vision_config"],
        qformer_config=spec["qformer_config"],
        text_config=text,
        num_query_tokens=spec["num_query_tokens"],
    )
    return config, spec["prompt"]


def from_config(name: str, tokenizer) -> VideoBlip2:
    """A randomly initialised tiny model for ``tokenizer`` (a word-level one at tiny scale)."""
    config, prompt = tiny_config(
        name, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id
    )
    blip2 = Blip2ForConditionalGeneration(config)
    # transformers starts the queries at zero, where the Q-Former's first layer norm has an
    # infinite gradient (clipped to a step of nothing); BLIP-2 (LAVIS) draws them from
    # N(0, initializer_range).
    with torch.no_grad():
        blip2.query_tokens.normal_(0.0, config.qformer_config.initializer_range)
    return VideoBlip2(blip2, tokenizer, prompt)


def from_pretrained(name_or_path: str, prompt: str | None = None, **kwargs) -> VideoBlip2:
    """A BLIP-2 checkpoint and its tokenizer, offline when ``HF_HUB_OFFLINE=1``. Never runs
    remote code. The prompt comes from the folder (saved by :func:`save`), else the paper's. A
    path that is not there is an error naming it, never a hub lookup."""
    if not Path(name_or_path).exists() and not HUB_ID.fullmatch(str(name_or_path)):
        raise FileNotFoundError(
            f"{name_or_path}: no such model folder ({Path(name_or_path).resolve()}), and not a "
            "hub id (organisation/name)"
        )
    blip2 = Blip2ForConditionalGeneration.from_pretrained(name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    saved = Path(name_or_path) / PROMPT_FILE
    if prompt is None and saved.exists():
        prompt = json.loads(saved.read_text())["prompt"]
    if prompt is None:
        prompt = PRETRAINED_PROMPTS.get(blip2.config.text_config.model_type, "")
    return VideoBlip2(blip2, tokenizer, prompt)


def save(model: VideoBlip2, folder: str | Path) -> Path:
    """A full, loadable model folder (safetensors weights, config, tokenizer, prompt).

    LoRA adapters are merged into the weights they adapt first, so the folder is a plain
    BLIP-2 checkpoint that ``from_pretrained`` (and any other BLIP-2 code) loads."""
    folder = Path(folder)
    for module in model.modules():
        if isinstance(module, LoraLayer) and not module.merged:
            module.merge()
    state = {
        k.replace(".base_layer.", "."): v
        for k, v in model.blip2.state_dict().items()
        if "lora_" not in k
    }
    model.blip2.save_pretrained(folder, state_dict=state, safe_serialization=True)
    model.tokenizer.save_pretrained(folder)
    (folder / PROMPT_FILE).write_text(json.dumps({"prompt": model.prompt}))
    return folder
