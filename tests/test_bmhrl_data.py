"""BMHRL data: vocabulary, event items and their feature rows, collate, GloVe reading and the
tiny-scale embeddings."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from vidrepro.bmhrl.data import (
    END_ID,
    PAD_ID,
    START_ID,
    UNK_ID,
    DenseCaptions,
    Vocab,
    collate,
    gt_proposals,
    train_sentences,
)
from vidrepro.bmhrl.embeddings import INIT_STD, read_glove, train_embeddings
from vidrepro.data.formats import activitynet
from vidrepro.data.formats.activitynet import I3D_DIR, VGGISH_DIR, AnetVideo, Event
from vidrepro.data.formats.errors import FormatError
from vidrepro.data.synthetic.datasets import ensure

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
VERBS = ("bounces", "shrinks", "splits", "grows", "expands", "disappears")


@pytest.fixture(scope="module")
def tiny() -> Path:
    return ensure("dense")


@pytest.fixture(scope="module")
def tiny_vocab(tiny) -> Vocab:
    return Vocab.build(train_sentences(tiny))


def _write_video(root: Path, video_id: str, rows: int, audio_rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for kind, n in (("rgb", rows), ("flow", rows), ("audio", audio_rows)):
        folder = root / (VGGISH_DIR if kind == "audio" else I3D_DIR)
        dim = activitynet.FEATURE_DIMS[kind]
        activitynet.write_features(folder, video_id, kind, rng.normal(size=(n, dim)))


@pytest.fixture
def handmade(tmp_path) -> Path:
    """Three videos; v_b's val_1 annotation repeats a segment, val_2 annotates differently."""
    train = [
        AnetVideo(
            "v_a",
            10.0,
            (Event(0.0, 4.0, "A red box grows"), Event(5.0, 10.0, "the red box shrinks")),
        ),
        AnetVideo("v_b", 20.0, (Event(2.0, 3.0, "a bell rings"),)),
        AnetVideo("v_c", 8.0, (Event(1.0, 7.5, "a blue ball bounces"),)),
    ]
    activitynet.write_annotations(tmp_path / "train.json", train)
    val_1 = [
        AnetVideo(
            "v_b",
            20.0,
            (
                Event(2.0, 3.0, "a bell rings"),
                Event(2.0, 3.0, "you hear a bell"),
                Event(10.0, 20.0, "a red box appears"),
            ),
        )
    ]
    val_2 = [AnetVideo("v_b", 20.0, (Event(1.5, 3.5, "a bell chimes"),))]
    activitynet.write_annotations(tmp_path / "val_1.json", val_1)
    activitynet.write_annotations(tmp_path / "val_2.json", val_2)
    _write_video(tmp_path, "v_a", 10, 12, seed=1)
    _write_video(tmp_path, "v_b", 3, 21, seed=2)
    _write_video(tmp_path, "v_c", 7, 5, seed=3)
    return tmp_path


def test_vocab_round_trip(tmp_path):
    vocab = Vocab.build(["A red box grows.", "a blue box", "the rare word"], min_count=2)
    assert vocab.itos[:4] == ("<pad>", "<s>", "</s>", "<unk>")
    assert (PAD_ID, START_ID, END_ID, UNK_ID) == (0, 1, 2, 3)
    assert vocab.itos[4:] == ("a", "box")  # counts 2, 2, ties alphabetical; the rest < 2
    ids = vocab.encode("A BOX grows")
    assert ids == [START_ID, vocab.stoi["a"], vocab.stoi["box"], UNK_ID, END_ID]
    assert vocab.decode(ids) == "a box"  # unknown skipped
    assert vocab.decode(torch.tensor(ids[:3] + [END_ID, vocab.stoi["a"], PAD_ID])) == "a box"
    assert vocab.encode("a box a box", max_len=4) == [START_ID, 4, 5, END_ID]
    with pytest.raises(ValueError, match="max_len"):
        vocab.encode("a", max_len=1)
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "bad.json").write_text('{"words": []}')
    with pytest.raises(FormatError, match="bad.json: vocabulary: missing key 'itos'"):
        Vocab.load(tmp_path / "bad.json")


def test_tiny_vocab_decodes_every_training_caption(tiny, tiny_vocab):
    for sentence in train_sentences(tiny):
        assert tiny_vocab.decode(tiny_vocab.encode(sentence)) == sentence.lower()


def test_items_are_the_events_with_their_feature_rows(tiny, tiny_vocab):
    data = DenseCaptions(tiny, "train", tiny_vocab)
    videos = activitynet.read_annotations(tiny / "train.json")
    assert len(data) == sum(len(v.events) for v in videos) and data.missing.count == 0
    uncached = DenseCaptions(tiny, "train", tiny_vocab, cache=False)
    for i in range(0, len(data), 7):
        item = data[i]
        video = next(v for v in videos if v.video_id == item.video_id)
        event = video.events[item.event]
        assert (item.start, item.end, item.duration) == (event.start, event.end, video.duration)
        assert item.sentence == event.sentence
        assert list(item.tokens) == tiny_vocab.encode(event.sentence)
        stacks = {
            k: activitynet.load_features(
                tiny / (VGGISH_DIR if k == "audio" else I3D_DIR), item.video_id, k
            )
            for k in ("rgb", "flow", "audio")
        }
        lo, hi = activitynet.feature_rows(
            len(stacks["rgb"]), event.start, event.end, video.duration
        )
        np.testing.assert_array_equal(item.video, stacks["rgb"][lo:hi] + stacks["flow"][lo:hi])
        lo, hi = activitynet.feature_rows(
            len(stacks["audio"]), event.start, event.end, video.duration
        )
        np.testing.assert_array_equal(item.audio, stacks["audio"][lo:hi])
        assert item.video.dtype == item.audio.dtype == np.float32
        np.testing.assert_array_equal(uncached[i].video, item.video)
        np.testing.assert_array_equal(uncached[i].audio, item.audio)


def test_collate_pads_rows_and_tokens_with_masks(handmade):
    vocab = Vocab.build(train_sentences(handmade))
    data = DenseCaptions(handmade, "train", vocab)
    items = [data[i] for i in range(len(data))]
    # BMT's proportional slicing; v_b's event covers less than a row and gets one.
    assert [len(it.video) for it in items] == [4, 5, 1, 6]
    assert [len(it.audio) for it in items] == [4, 6, 1, 4]
    batch = collate(items)
    sv = max(len(it.video) for it in items)
    sa = max(len(it.audio) for it in items)
    length = max(len(it.tokens) for it in items)
    assert batch.video.shape == (4, sv, 1024) and batch.video.dtype == torch.float32
    assert batch.audio.shape == (4, sa, 128) and batch.audio.dtype == torch.float32
    assert batch.tokens.shape == (4, length) and batch.tokens.dtype == torch.long
    masks = (batch.video_mask, batch.audio_mask, batch.tokens_mask)
    assert all(m.dtype == torch.bool for m in masks)
    for b, it in enumerate(items):
        assert batch.video_mask[b, : len(it.video)].all()
        assert batch.video_mask[b].sum() == len(it.video)
        assert batch.audio_mask[b].sum() == len(it.audio)
        assert batch.tokens_mask[b].sum() == len(it.tokens)
        assert torch.equal(batch.video[b, : len(it.video)], torch.from_numpy(it.video))
        assert (batch.video[b, len(it.video) :] == 0).all()
        assert batch.tokens[b, : len(it.tokens)].tolist() == list(it.tokens)
        assert (batch.tokens[b, len(it.tokens) :] == PAD_ID).all()
    assert batch.video_ids == ["v_a", "v_a", "v_b", "v_c"] and batch.events == [0, 1, 0, 0]
    assert batch.segments[1] == (5.0, 10.0) and batch.durations[3] == 8.0
    loader = DataLoader(data, batch_size=3, collate_fn=collate)
    assert [len(b) for b in loader] == [3, 1]
    assert next(iter(loader)).to("cpu").video.shape == (3, 5, 1024)


def test_missing_feature_file_is_skipped_and_counted_or_named(handmade):
    vocab = Vocab.build(train_sentences(handmade))
    gone = activitynet.feature_path(handmade / I3D_DIR, "v_a", "flow")
    gone.unlink()
    data = DenseCaptions(handmade, "train", vocab)
    assert [v.video_id for v in data.videos] == ["v_b", "v_c"] and len(data) == 2
    assert data.missing.count == 1 and str(gone) in str(data.missing)
    with pytest.raises(FormatError, match="v_a_flow.npy") as info:
        DenseCaptions(handmade, "train", vocab, on_missing="raise")
    assert info.value.path == str(gone)


@pytest.mark.parametrize("cache", [True, False])
def test_misshaped_feature_file_is_an_error_naming_it(handmade, cache):
    vocab = Vocab.build(train_sentences(handmade))
    bad = activitynet.feature_path(handmade / VGGISH_DIR, "v_c", "audio")
    np.save(bad, np.zeros((5, 64), np.float32))
    data = DenseCaptions(handmade, "train", vocab, cache=cache)
    data[0]  # v_a is fine
    with pytest.raises(FormatError, match="must be") as info:
        data[3]
    assert info.value.path == str(bad) and "v_c" in info.value.entry


def test_malformed_annotation_is_an_error_naming_file_and_video(handmade):
    vocab = Vocab.build(["a"])
    path = handmade / "val_2.json"
    path.write_text('{"v_b": {"duration": 20.0, "timestamps": [[1.0, 2.0]]}}')
    with pytest.raises(FormatError, match="sentences") as info:
        DenseCaptions(handmade, "val_2", vocab)
    assert info.value.path == str(path) and "v_b" in info.value.entry
    data = DenseCaptions(handmade, "val_2", vocab, on_error="skip")
    assert len(data) == 0 and data.malformed.count == 1
    with pytest.raises(ValueError, match="split"):
        DenseCaptions(handmade, "val", vocab)


def test_unique_segments_for_captioning_with_gt_proposals(handmade):
    vocab = Vocab.build(train_sentences(handmade))
    events = DenseCaptions(handmade, "val_1", vocab)
    segments = DenseCaptions(handmade, "val_1", vocab, unique_segments=True)
    assert len(events) == 3 and len(segments) == 2
    assert [(it.start, it.end, it.event) for it in segments] == [(2.0, 3.0, 0), (10.0, 20.0, 2)]
    assert segments.segments() == {"v_b": [(2.0, 3.0), (10.0, 20.0)]}
    assert gt_proposals(handmade, "val_1") == segments.segments()
    assert gt_proposals(handmade, "val_2") == {"v_b": [(1.5, 3.5)]}
    refs = events.references()
    assert refs["v_b"]["sentences"][1] == "you hear a bell"
    assert refs["v_b"]["timestamps"][2] == [10.0, 20.0]
    activitynet.feature_path(handmade / VGGISH_DIR, "v_b", "audio").unlink()
    assert gt_proposals(handmade, "val_1") == {}  # BMT scores on videos with features only


def _glove(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_read_glove_keeps_vocabulary_words(tmp_path):
    vocab = Vocab([*Vocab.build([]).itos, "the", ". . .", "box", "absent"])
    dim = 3
    path = _glove(
        tmp_path / "glove.txt",
        [
            "the 0.1 0.2 0.3",
            "other 9 9 9",
            ". . . 1.5 -2 3e-1",  # a token with spaces: the last dim fields are the vector
            "box 4 5 6 ",  # trailing space
            "the 7 7 7",  # a repeat: the first row wins
        ],
    )
    matrix, found = read_glove(path, vocab, dim=dim, seed=3)
    assert matrix.shape == (len(vocab), dim) and matrix.dtype == np.float32 and found == 3
    np.testing.assert_allclose(matrix[vocab.stoi["the"]], [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(matrix[vocab.stoi[". . ."]], [1.5, -2, 0.3], rtol=1e-6)
    np.testing.assert_allclose(matrix[vocab.stoi["box"]], [4, 5, 6])
    assert (matrix[PAD_ID] == 0).all()
    for word in ("<s>", "</s>", "<unk>", "absent"):  # not found: small random rows
        row = matrix[vocab.stoi[word]]
        assert 0 < np.abs(row).max() < 10 * INIT_STD
    again, _ = read_glove(path, vocab, dim=dim, seed=3)
    np.testing.assert_array_equal(again, matrix)
    with gzip.open(tmp_path / "glove.txt.gz", "wt", encoding="utf-8") as f:
        f.write(path.read_text(encoding="utf-8"))
    zipped, _ = read_glove(tmp_path / "glove.txt.gz", vocab, dim=dim, seed=3)
    np.testing.assert_array_equal(zipped, matrix)


def test_read_glove_malformed_lines_name_file_and_line(tmp_path):
    vocab = Vocab([*Vocab.build([]).itos, "the", "box"])
    short = _glove(tmp_path / "short.txt", ["the 1 2 3", "other 1 2 3", "box 1 2"])
    with pytest.raises(ValueError, match=r"short\.txt: line 3: expected a word and 3 numbers"):
        read_glove(short, vocab, dim=3)
    bad = _glove(tmp_path / "bad.txt", ["the 1 2 3", "box 1 two 3"])
    with pytest.raises(ValueError, match=r"bad\.txt: line 2"):
        read_glove(bad, vocab, dim=3)


def _cosines(
    matrix: np.ndarray, vocab: Vocab, a: tuple[str, ...], b: tuple[str, ...]
) -> np.ndarray:
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True).clip(1e-12)
    rows_a = unit[[vocab.stoi[w] for w in a]]
    rows_b = unit[[vocab.stoi[w] for w in b]]
    return rows_a @ rows_b.T


def test_trained_embeddings_group_words_that_share_contexts(tiny, tiny_vocab):
    sentences = train_sentences(tiny)
    matrix = train_embeddings(sentences, tiny_vocab, dim=300, seed=0)
    assert matrix.shape == (len(tiny_vocab), 300) and matrix.dtype == np.float32
    assert (matrix[PAD_ID] == 0).all()
    colours = _cosines(matrix, tiny_vocab, COLOURS, COLOURS)[np.triu_indices(len(COLOURS), 1)]
    verbs = _cosines(matrix, tiny_vocab, VERBS, VERBS)[np.triu_indices(len(VERBS), 1)]
    across = _cosines(matrix, tiny_vocab, COLOURS, VERBS)
    # "a <colour> <shape>" vs "<shape> <verb>": measured 0.72 / 0.36 within, 0.20 across.
    assert colours.mean() > across.mean() + 0.3 and colours.min() > across.max()
    assert verbs.mean() > across.mean() + 0.1
    bell = _cosines(matrix, tiny_vocab, ("bell",), ("whistle", "red"))[0]
    assert bell[0] > bell[1] + 0.3  # sound sources vs a colour


def test_trained_embeddings_are_deterministic_given_the_seed(tiny, tiny_vocab):
    sentences = train_sentences(tiny)
    a = train_embeddings(sentences, tiny_vocab, dim=64, seed=1)
    np.testing.assert_array_equal(a, train_embeddings(sentences, tiny_vocab, dim=64, seed=1))
    b = train_embeddings(sentences, tiny_vocab, dim=64, seed=2)
    assert not np.allclose(a, b)
    # Another seed rotates the fitted vectors: their cosines do not change.
    words = COLOURS + VERBS
    np.testing.assert_allclose(
        _cosines(a, tiny_vocab, words, words), _cosines(b, tiny_vocab, words, words), atol=1e-5
    )
