"""ClipClassifier (tiny, built from configs/tiny_vit.json) and the multi-task pseudo-labels."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from vidrepro.object_states.model import (
    META_FILE,
    ClipClassifier,
    category_probs,
    make_optimizers,
    read_state_dict,
)
from vidrepro.object_states.targets import (
    best_triple,
    gather_frames,
    multitask_loss,
    no_grad_probs,
    pseudo_labels,
    state_change_targets,
    video_weights,
)

CATEGORIES = ["peel_apple", "cut_bread", "fold_paper"]  # K = 3, indexed in name order


@pytest.fixture
def model() -> ClipClassifier:
    torch.manual_seed(0)
    return ClipClassifier.from_config("tiny_vit", CATEGORIES)


def frames(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_sorted_categories(model):
    state, action = model(frames(5))
    assert state.shape == (5, 2 * 3 + 1) and action.shape == (5, 3 + 1)
    assert model.categories == ["cut_bread", "fold_paper", "peel_apple"]
    assert model.category_index["peel_apple"] == 2
    assert model.backbone.proj is None and model.state_head[0].in_features == 32


def test_frozen_backbone_is_not_trained_heads_are(model):
    optimizers = make_optimizers(model, train_backbone=False)
    assert len(optimizers) == 1 and isinstance(optimizers[0], torch.optim.SGD)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state, action = model(frames(4))
    (state.logsumexp(-1).sum() + action[:, 0].sum()).backward()
    for opt in optimizers:
        opt.step()
    for name, p in model.backbone.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, before[f"backbone.{name}"]), name
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith(("state_head.", "action_head.")) for k in changed)


def test_trained_backbone_gets_adamw(model):
    optimizers = make_optimizers(model, train_backbone=True)
    assert [type(o) for o in optimizers] == [torch.optim.SGD, torch.optim.AdamW]
    before = model.backbone.conv1.weight.clone()
    model(frames(2))[0].sum().backward()
    for opt in optimizers:
        opt.step()
    assert not torch.equal(before, model.backbone.conv1.weight)


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path / "ckpt")
    meta = json.loads((tmp_path / "ckpt" / META_FILE).read_text())
    assert meta["categories"] == {"cut_bread": 0, "fold_paper": 1, "peel_apple": 2}
    loaded = ClipClassifier.load(tmp_path / "ckpt")
    assert loaded.categories == model.categories and loaded.config == model.config
    x = frames(3)
    for a, b in zip(model.eval()(x), loaded.eval()(x)):
        assert torch.equal(a, b)


def test_load_refuses_a_category_map_out_of_name_order(model, tmp_path):
    model.save(tmp_path / "ckpt")
    path = tmp_path / "ckpt" / META_FILE
    meta = json.loads(path.read_text())
    meta["categories"] = {"cut_bread": 1, "fold_paper": 0, "peel_apple": 2}
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="name order"):
        ClipClassifier.load(tmp_path / "ckpt")


def whole_clip_checkpoint(tower: nn.Module) -> dict[str, torch.Tensor]:
    """What a full CLIP file holds: the tower under ``visual.`` with its projection, plus text."""
    state = {f"visual.{k}": v.clone() for k, v in tower.state_dict().items()}
    state["visual.proj"] = torch.randn(32, 16)
    state["logit_scale"] = torch.tensor(4.6)
    state["token_embedding.weight"] = torch.randn(10, 16)
    return state


def test_from_openai_with_a_local_safetensors_clip(model, tmp_path):
    save_file(whole_clip_checkpoint(model.backbone), tmp_path / "clip.safetensors")
    loaded = ClipClassifier.from_openai(
        "tiny_vit", tmp_path / "clip.safetensors", categories=CATEGORIES, hidden=8
    )
    assert loaded.state_head[0].out_features == 8
    x = frames(2)
    assert torch.equal(model.backbone(x), loaded.backbone(x))


def test_from_openai_with_a_torch_file_of_a_bare_tower(model, tmp_path):
    torch.save({"state_dict": model.backbone.state_dict()}, tmp_path / "tower.pt")
    loaded = ClipClassifier.from_openai(
        "tiny_vit", str(tmp_path / "tower.pt"), categories=CATEGORIES
    )
    x = frames(2)
    assert torch.equal(model.backbone(x), loaded.backbone(x))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # TorchScript
def test_unsafe_or_unknown_weights_are_refused(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), tmp_path / "jit.pt")
    with pytest.raises(ValueError, match="weights_only"):
        read_state_dict(tmp_path / "jit.pt")
    with pytest.raises(ValueError, match="neither a file nor an open_clip tag"):
        ClipClassifier.from_openai("tiny_vit", "openai", categories=CATEGORIES)


def test_category_probs_select_and_sum():
    torch.manual_seed(1)
    state, action = torch.randn(2, 6, 7), torch.randn(2, 6, 4)  # (B, T, 2K+1), (B, T, K+1)
    parts = [category_probs(state, action, c) for c in range(3)]
    p_state, p_action = state.softmax(-1), action.softmax(-1)
    states = sum(p_init + p_end for p_init, _, p_end in parts) + p_state[..., 6]
    actions = sum(p_a for _, p_a, _ in parts) + p_action[..., 3]
    torch.testing.assert_close(states, torch.ones(2, 6))
    torch.testing.assert_close(actions, torch.ones(2, 6))
    torch.testing.assert_close(parts[1][2], p_state[..., 3])  # end state of c = 1 is class 3
    batched = category_probs(state, action, torch.tensor([2, 0]))
    for got, row0, row1 in zip(batched, parts[2], parts[0]):
        torch.testing.assert_close(got, torch.stack([row0[0], row1[1]]))


def test_targets_on_a_hand_made_video():
    """T = 20, K = 3, c = 1: s1 and s2 at the edges, kappa = 60 clamps to both ends."""
    labels = state_change_targets(0, 10, 19, 20, 1, 3)
    assert labels.frames.tolist() == [0, 0, 1, 18, 19, 19, 9, 10, 11, 0, 0, 0, 19, 19, 19]
    assert labels.state.tolist() == [2] * 3 + [3] * 3 + [6] * 9
    assert labels.state_mask.tolist() == [1.0] * 9 + [0.0] * 6
    assert labels.action.tolist() == [3] * 6 + [1] * 3 + [3] * 6
    assert labels.triple.tolist() == [0, 10, 19]


def test_targets_batched_with_small_kappa_and_per_video_lengths():
    labels = state_change_targets(
        torch.tensor([4, 1]),
        torch.tensor([9, 5]),
        torch.tensor([15, 11]),
        torch.tensor([20, 12]),
        torch.tensor([0, 2]),
        3,
        kappa=7,
    )
    assert labels.frames.tolist() == [
        [3, 4, 5, 14, 15, 16, 8, 9, 10, 1, 2, 3, 15, 16, 17],
        [0, 1, 2, 10, 11, 11, 4, 5, 6, 0, 0, 0, 11, 11, 11],
    ]
    assert labels.state[1].tolist() == [4] * 3 + [5] * 3 + [6] * 9
    assert labels.action[0].tolist() == [3] * 6 + [0] * 3 + [3] * 6
    assert labels.state_mask.shape == (2, 15) and labels.state_mask[:, 9:].sum() == 0


def test_noise_weight():
    w = video_weights([0.9, 0.1, 0.3005, 0.3], [0.3, 0.3, 0.3, 0.3])
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0, 0.6225, 0.5]), atol=1e-4, rtol=0)
    assert video_weights([0.1], [0.3], ignore_video_weight=True).tolist() == [1.0]


def test_loss_only_reaches_selected_frames(model):
    videos = [frames(20, seed=1).requires_grad_(), frames(14, seed=2).requires_grad_()]
    labels = pseudo_labels(model, videos, [0, 2], kappa=5)
    state, action = model(gather_frames(videos, labels))  # (B * 15, 7), (B * 15, 4)
    multitask_loss(state, action, labels, torch.ones(2)).backward()
    for video, selected in zip(videos, labels.frames):
        touched = video.grad.flatten(1).abs().sum(-1) > 0  # (T,)
        assert touched.nonzero().flatten().tolist() == sorted(set(selected.tolist()))


def test_loss_weights_mask_and_sum():
    torch.manual_seed(2)
    labels = state_change_targets(
        torch.tensor([2, 3]),
        torch.tensor([8, 9]),
        torch.tensor([14, 15]),
        30,
        torch.tensor([0, 1]),
        3,
        kappa=6,
    )
    state, action = torch.randn(30, 7), torch.randn(30, 4)
    loss = multitask_loss(state, action, labels, torch.tensor([1.0, 0.0]))
    first = labels._replace(
        **{k: getattr(labels, k)[:1] for k in ("state", "action", "state_mask")}
    )
    assert torch.allclose(loss, multitask_loss(state[:15], action[:15], first, torch.ones(1)))
    ce_s = nn.functional.cross_entropy(state[:9], labels.state[0, :9], reduction="sum")
    ce_a = nn.functional.cross_entropy(action[:15], labels.action[0], reduction="sum")
    assert torch.allclose(loss, ce_s + 0.2 * ce_a)
    masked = state.clone()
    masked[9:15] += 100 * torch.randn(6, 7)  # state logits of the masked entries do not count
    assert torch.allclose(loss, multitask_loss(masked, action, labels, torch.tensor([1.0, 0.0])))


class TableModel(nn.Module):
    """Returns fixed logits per frame; a frame's pixels hold its index (to test the pipeline)."""

    def __init__(self, state: torch.Tensor, action: torch.Tensor):
        super().__init__()
        self.register_buffer("state", state)  # (T, 2K+1)
        self.register_buffer("action", action)  # (T, K+1)
        self.dummy = nn.Parameter(torch.zeros(()))
        self.num_categories = action.shape[-1] - 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = x[:, 0, 0, 0].long()
        return self.state[idx], self.action[idx]


def crafted_model(length: int = 12) -> TableModel:
    """K = 1 video whose single-frame maxima run backwards: init at 9, action at 6, end at 2."""
    state, action = torch.zeros(length, 3), torch.zeros(length, 2)
    state[9, 0], state[1, 0] = 8.0, 5.0
    state[2, 1], state[10, 1] = 8.0, 5.0
    action[6, 0], action[5, 0] = 8.0, 7.0
    return TableModel(state, action)


def test_no_constraint_differs_from_constraint():
    model = crafted_model()
    video = torch.arange(12.0)[:, None, None, None].expand(12, 3, 4, 4)
    p_init, p_action, p_end = no_grad_probs(model, video, 0, chunk=5)
    assert best_triple(p_init, p_action, p_end, constraint=False).tolist() == [9, 6, 2]
    assert best_triple(p_init, p_action, p_end).tolist() == [1, 6, 10]
    assert best_triple(p_init, p_action, p_end, max_distance=4).tolist() == [3, 6, 10]
    free = pseudo_labels(model, [video], [0], constraint=False)
    ordered = pseudo_labels(model, [video], [0])
    assert free.triple.tolist() == [[9, 6, 2]] and ordered.triple.tolist() == [[1, 6, 10]]
    assert free.frames[0, :3].tolist() == [8, 9, 10] and ordered.frames[0, :3].tolist() == [0, 1, 2]
