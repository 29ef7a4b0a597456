"""The video BLIP-2: frames concatenated before one Q-Former, both LLM kinds, trainable
switches, and the pretrained loading path (a saved tiny model, offline)."""

import pytest
import torch

from vidrepro.blip2_video import build, trainable
from vidrepro.text import wordlevel

CAPTIONS = ["a red circle grows , then it moves left", "a blue square shrinks", "a video of"]


@pytest.fixture(scope="module")
def tok():
    return wordlevel.build(CAPTIONS)


@pytest.fixture(params=["tiny_t5", "tiny_opt"])
def model(request, tok):
    torch.manual_seed(0)
    return build.from_config(request.param, tok).eval()


def frames(b=2, t=4):
    return torch.randn(b, t, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_prefix_is_q_tokens_from_all_frames_without_order(model):
    x = frames(2, 4)
    with torch.no_grad():
        prefix = model.visual_prefix(x)
        assert prefix.shape == (
            2,
            8,
            model.language_model.config.hidden_size
            if model.decoder_only
            else model.language_model.config.d_model,
        )
        # Concatenated tokens and no temporal embedding: frame order does not matter...
        assert torch.allclose(prefix, model.visual_prefix(x[:, [2, 0, 3, 1]]), atol=1e-5)
        # ...but every frame does.
        changed = x.clone()
        changed[:, 3] = 0
        assert (prefix - model.visual_prefix(changed)).abs().max() > 1e-6


def test_a_fresh_model_has_random_queries_and_finite_gradients(model):
    """Queries at zero (transformers' default) give the Q-Former's first layer norm an
    infinite gradient, which clipping turns into a step of nothing."""
    assert model.blip2.query_tokens.std() > 0.01
    trainable.configure(model)
    model.loss(frames(), ["a red circle grows", "a blue square"]).backward()
    norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1e9)
    assert torch.isfinite(norm) and norm > 0


def test_token_logprobs_match_the_language_model_loss(model, tok):
    x = frames()
    targets = model.encode_targets(["a red circle grows", "a blue square"], x.device)
    with torch.no_grad():
        prefix = model.visual_prefix(x)
        logp = model.token_logprobs(prefix, targets)
        mask = targets != tok.pad_token_id
        assert (logp[~mask] == 0).all() and (logp[mask] < 0).all()
        assert torch.allclose(
            -logp.sum() / mask.sum(), model.loss(x, ["a red circle grows", "a blue square"])
        )
        if not model.decoder_only:  # T5 computes the same loss itself from labels
            embeds = torch.cat([prefix, model._embed(model._prompt_ids(2, x.device))], 1)
            hf = model.language_model(
                inputs_embeds=embeds, labels=targets.masked_fill(~mask, -100)
            ).loss
            assert torch.allclose(hf, -logp.sum() / mask.sum(), atol=1e-5)


@pytest.mark.slow
def test_a_few_steps_fit_a_batch(model):
    model.train()
    x, caps = frames(), ["a red circle grows", "a blue square shrinks"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = model.loss(x, caps).item()
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(x, caps)
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_generation_and_cleaning(model, tok):
    x = frames()
    ids = model.generate(x, do_sample=True, num_return_sequences=3, max_new_tokens=6)
    targets = model.clean_generated(ids)
    assert targets.shape[0] == 6 and not (targets == tok.pad_token_id).all()
    eos = (targets == tok.eos_token_id).int()
    assert (eos.sum(1) <= 1).all()  # nothing after the first end-of-sequence
    beams = model.generate(x, num_beams=3, max_new_tokens=6, min_length=3)
    assert len(model.decode(beams)) == 2


def test_frozen_parts_get_no_gradient(model):
    names = trainable.configure(model, lora=True)
    assert any("lora_A" in n for n in names) and any(n.startswith("blip2.qformer.") for n in names)
    assert not any(n.startswith("blip2.vision_model.encoder") for n in names)
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.loss(frames(), ["a red circle", "a blue square"]).backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert moved <= set(names)  # nothing frozen changed...
    assert all(p.grad is None for n, p in model.named_parameters() if n not in names)
    assert any("lora_B" in n for n in moved) and any(".crossattention." in n for n in moved)
    assert set(trainable.trainable_state(model)) == set(names)
    vit = trainable.configure(build.from_config("tiny_t5", model.tokenizer), train_vit=True)
    assert any(n.startswith("blip2.vision_model.encoder") for n in vit)


def test_saved_model_loads_back_through_from_pretrained(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    build.save(model, tmp_path / "m")
    loaded = build.from_pretrained(str(tmp_path / "m")).eval()
    assert loaded.prompt == model.prompt and loaded.decoder_only == model.decoder_only
    x = frames()
    with torch.no_grad():
        assert torch.allclose(model.visual_prefix(x), loaded.visual_prefix(x))
        assert torch.equal(
            model.generate(x, max_new_tokens=5), loaded.generate(x, max_new_tokens=5)
        )


def test_lora_model_saves_merged_and_loads_back(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    trainable.configure(model, lora=True)
    with torch.no_grad():  # a trained adapter: B no longer zero
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.eval()  # freshly injected adapters start in training mode (dropout)
    x = frames()
    with torch.no_grad():
        expected = model(x, model.encode_targets(["a red circle"] * 2, x.device))
    build.save(model, tmp_path / "lora")
    loaded = build.from_pretrained(str(tmp_path / "lora")).eval()
    with torch.no_grad():
        got = loaded(x, loaded.encode_targets(["a red circle"] * 2, x.device))
    assert torch.allclose(expected, got, atol=1e-4)


def test_targets_are_the_same_for_the_tiny_tokenizer_and_end_with_eos_for_opts(tok):
    """OPT's tokenizer puts ``</s>`` first and nothing last; trained on that as is, a model ends
    every caption before it starts. Targets are the caption's tokens, then the end token."""
    from tokenizers import processors

    model = build.from_config("tiny_opt", tok)
    caps = ["a red circle grows", "a blue square shrinks , then it moves left"]
    plain = tok(caps, padding=True, return_tensors="pt").input_ids  # the tiny one appends </s>
    assert torch.equal(model.encode_targets(caps, torch.device("cpu")), plain)

    opt_style = wordlevel.build(CAPTIONS)  # BOS = EOS = </s>, prepended, as OPT's
    eos = opt_style.eos_token
    opt_style._tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{eos} $A", special_tokens=[(eos, opt_style.eos_token_id)]
    )
    assert opt_style("a red circle").input_ids[0] == opt_style.eos_token_id
    torch.manual_seed(0)
    model = build.from_config("tiny_opt", opt_style)
    targets = model.encode_targets(caps, torch.device("cpu"))
    assert targets[0, 0] != opt_style.eos_token_id and targets[0, 4] == opt_style.eos_token_id
    assert torch.equal(targets, plain)  # the same targets as a tokenizer that appends </s>
    x, opt = frames(1), torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        model.loss(x, caps[:1]).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        caption = model.decode(model.generate(x, max_new_tokens=8))[0]
    assert caption.strip(), "greedy decoding ended the caption before its first word"
