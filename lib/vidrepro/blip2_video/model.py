"""BLIP-2 on video, the paper's way: every frame's ViT tokens, concatenated, through one Q-Former.

``Blip2ForConditionalGeneration`` takes one image (B, 3, H, W). The paper feeds T frames by
running the ViT on all B·T frames, concatenating each video's tokens into one (B, T·N, D)
sequence and letting the 32 queries cross-attend over all of it: no temporal embedding, no new
parameters, and the LLM still sees 32 tokens. This module does that with transformers' own BLIP-2
parts, for both kinds of language model the paper used (FLAN-T5: encoder-decoder; OPT:
decoder-only), and adds what SCST needs: log-probabilities of given captions with gradients
(``generate`` runs without them).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Blip2ForConditionalGeneration, PreTrainedTokenizerBase


class VideoBlip2(nn.Module):
    def __init__(
        self,
        blip2: Blip2ForConditionalGeneration,
        tokenizer: PreTrainedTokenizerBase,
        prompt: str = "",
    ):
        super().__init__()
        self.blip2 = blip2
        self.tokenizer = tokenizer
        self.prompt = prompt
        # Tokenised once: every forward and generate call prepends it.
        self._prompt = tokenizer(prompt, add_special_tokens=False).input_ids
        self.decoder_only = blip2.config.use_decoder_only_language_model

    @property
    def language_model(self) -> nn.Module:
        return self.blip2.language_model

    def visual_prefix(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, T, 3, H, W), normalised -> (B, Q, D_lm) query embeddings for the LM."""
        b, t = frames.shape[:2]
        vision = self.blip2.vision_model(pixel_values=frames.flatten(0, 1)).last_hidden_state
        vision = vision.reshape(b, t * vision.shape[1], vision.shape[2])  # (B, T·N, D_vit)
        queries = self.blip2.query_tokens.expand(b, -1, -1)  # (B, Q, D_qformer)
        mask = torch.ones(vision.shape[:2], dtype=torch.long, device=vision.device)
        out = self.blip2.qformer(
            query_embeds=queries, encoder_hidden_states=vision, encoder_attention_mask=mask
        ).last_hidden_state
        return self.blip2.language_projection(out.to(vision.dtype))  # (B, Q, D_lm)

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.language_model.get_input_embeddings()(ids)

    def _prompt_ids(self, batch: int, device: torch.device) -> torch.Tensor:
        """(B, P) the prompt's tokens without an end-of-sequence ((B, 0) for an empty prompt)."""
        return torch.tensor(self._prompt, dtype=torch.long, device=device).expand(batch, -1)

    def encode_targets(self, captions: list[str], device: torch.device) -> torch.Tensor:
        """(B, L) caption tokens ending with the end token generation stops at, right-padded
        with pad. The tokenizer's own special tokens are left out: OPT's puts ``</s>`` first and
        nothing last, which would teach the model to end every caption before it starts."""
        limit = min(getattr(self.tokenizer, "model_max_length", 64), 64)
        ids = self.tokenizer(
            captions, add_special_tokens=False, truncation=True, max_length=limit - 1
        ).input_ids
        out = torch.full(
            (len(ids), max(map(len, ids)) + 1), self.tokenizer.pad_token_id, dtype=torch.long
        )
        for row, seq in enumerate(ids):
            out[row, : len(seq) + 1] = torch.tensor([*seq, self.tokenizer.eos_token_id])
        return out.to(device)

    def token_logprobs(self, prefix: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forced log p(target token | video, prompt, earlier tokens): (B, L), 0 at pad.

        The one pass behind the cross-entropy loss and SCST's policy gradient alike."""
        b, device = prefix.shape[0], prefix.device
        prompt = self._prompt_ids(b, device)
        pad = self.tokenizer.pad_token_id
        mask = targets != pad  # (B, L)
        if self.decoder_only:
            # [queries, prompt, targets]; the logit at position i predicts token i + 1.
            embeds = torch.cat([prefix, self._embed(prompt), self._embed(targets)], 1)
            fixed = prefix.shape[1] + prompt.shape[1]
            attn = torch.cat(
                [torch.ones(b, fixed, dtype=torch.long, device=device), mask.long()], 1
            )
            logits = self.language_model(inputs_embeds=embeds, attention_mask=attn).logits
            logits = logits[:, fixed - 1 : fixed - 1 + targets.shape[1]]  # (B, L, V)
        else:
            embeds = torch.cat([prefix, self._embed(prompt)], 1)
            attn = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
            labels = targets.masked_fill(~mask, -100)
            logits = self.language_model(
                inputs_embeds=embeds, attention_mask=attn, labels=labels
            ).logits  # (B, L, V)
        logp = torch.log_softmax(logits.float(), -1).gather(-1, targets.unsqueeze(-1))[..., 0]
        return logp * mask

    def forward(self, frames: torch.Tensor, targets: torch.Tensor, repeat: int = 1) -> torch.Tensor:
        """(B·repeat, L) teacher-forced log-probabilities of ``targets``; the entry point that
        DistributedDataParallel wraps (``repeat``: K sampled captions per video in SCST)."""
        prefix = self.visual_prefix(frames)
        return self.token_logprobs(
            prefix.repeat_interleave(repeat, 0) if repeat > 1 else prefix, targets
        )

    def loss(self, frames: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """Mean cross-entropy per caption token."""
        return xe_loss(
            self, frames, self.encode_targets(captions, frames.device), self.tokenizer.pad_token_id
        )

    @torch.no_grad()
    def generate(
        self, frames: torch.Tensor | None = None, prefix: torch.Tensor | None = None, **kwargs
    ) -> torch.Tensor:
        """Token ids (B·num_return_sequences, L) from ``language_model.generate``; for OPT only
        the new tokens. kwargs: num_beams, do_sample, max_new_tokens, min_length, ..."""
        prefix = self.visual_prefix(frames) if prefix is None else prefix
        b, device = prefix.shape[0], prefix.device
        embeds = torch.cat([prefix, self._embed(self._prompt_ids(b, device))], 1)
        attn = torch.ones(embeds.shape[:2], dtype=torch.long, device=device)
        pad = self.tokenizer.pad_token_id
        # Padding is never a word: a sampled pad would vanish from the policy gradient.
        special = {
            "pad_token_id": pad,
            "eos_token_id": self.tokenizer.eos_token_id,
            "suppress_tokens": [pad],
        }
        if not self.decoder_only:
            special["decoder_start_token_id"] = pad
        return self.language_model.generate(
            inputs_embeds=embeds, attention_mask=attn, **special, **kwargs
        )

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def clean_generated(self, ids: torch.Tensor) -> torch.Tensor:
        """Generated ids -> targets for :meth:`token_logprobs`: T5's leading decoder-start pad
        dropped, everything after the first end-of-sequence set to pad."""
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        if not self.decoder_only:
            ids = ids[:, 1:]
        is_eos = (ids == eos).int()
        after_first = (is_eos.cumsum(1) - is_eos) > 0  # (B, L)
        return ids.masked_fill(after_first, pad)


def xe_loss(
    model: nn.Module, frames: torch.Tensor, targets: torch.Tensor, pad: int
) -> torch.Tensor:
    """Mean cross-entropy per caption token, through ``model(...)`` (plain or DDP-wrapped)."""
    logp = model(frames, targets)
    return -logp.sum() / (targets != pad).sum()
