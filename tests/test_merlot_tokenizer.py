"""MERLOT with a local subword tokenizer (full scale): a BPE trained here stands in for
RoBERTa's, which cannot be downloaded; its ids must fit the objectives' fixed special ids."""

import json

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from vidrepro.merlot import objectives as O
from vidrepro.merlot import pipeline
from vidrepro.merlot.input_pipeline import encode
from vidrepro.merlot.params import Data

SENTENCES = [
    "the red box moves to the left",
    "a blue disc appears",
    "what happens right after the red box shrinks ?",
]
ROBERTA_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0-4 in RoBERTa's BPE


def roberta_like(folder):
    """A byte-level BPE with RoBERTa's specials and post-processor, saved as tokenizer.json."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        SENTENCES * 10,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=ROBERTA_SPECIALS,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    core.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    folder.mkdir(parents=True, exist_ok=True)
    core.save(str(folder / "tokenizer.json"))
    return core


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDREPRO_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_bpe_ids_leave_the_special_ids_to_the_objectives(data_root):
    source = roberta_like(data_root / "bpe")
    tok = pipeline.tokenizer_for(Data(tokenizer="bpe/tokenizer.json"))  # relative to the data
    assert tok.convert_tokens_to_ids(["<pad>", "<mask>", "<start>"]) == [O.PAD, O.MASK, O.START]
    assert len(tok) == source.get_vocab_size() + 1  # only <start> is new: <mask> etc. moved
    assert sorted(tok.get_vocab().values()) == list(range(len(tok)))  # dense ids
    texts = [*SENTENCES, "zebras never appear here"]  # words the BPE never saw too
    text = encode(tok, texts, 48)  # long enough for every byte-level piece
    assert (text[:, 0] == O.START).all()
    words = text[:, 1:][text[:, 1:] != O.PAD]
    assert (words >= O.SPECIAL_IDS).all()
    cfg, _ = pipeline.new_model("tiny", tok, (16, 16))
    assert text.max() < cfg.vocab_size and len(tok) <= cfg.vocab_size
    assert [tok.decode(row, skip_special_tokens=True) for row in text] == texts


def test_renumbering_keeps_the_tokenization(data_root):
    source = roberta_like(data_root / "bpe")
    tok = pipeline.tokenizer_for(Data(tokenizer="bpe/tokenizer.json"))
    for text in SENTENCES:
        old = source.encode(text, add_special_tokens=False).tokens
        assert tok.convert_ids_to_tokens(tok(text).input_ids) == old  # no <s> ... </s> added


@pytest.mark.slow
def test_saved_model_folder_gives_the_same_ids(data_root, tmp_path):
    roberta_like(data_root / "bpe")
    p = Data(tokenizer=str(data_root / "bpe" / "tokenizer.json"))  # absolute works too
    tok = pipeline.tokenizer_for(p)
    cfg, params = pipeline.new_model("tiny", tok, (16, 16))
    folder = pipeline.save(tmp_path / "model", cfg, params, tok, pipeline.train.History())
    _, _, loaded = pipeline.load(folder)
    assert loaded.get_vocab() == tok.get_vocab()
    assert (encode(loaded, SENTENCES, 16) == encode(tok, SENTENCES, 16)).all()
    again = pipeline.tokenizer_for(Data(tokenizer=str(folder)))  # a folder, renumbered twice
    assert again.get_vocab() == tok.get_vocab()


def test_the_tokenizers_unknown_token_takes_the_unknown_id(data_root):
    vocab = {"[UNK]": 0, "[PAD]": 1, "red": 2, "box": 3}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.save(str(data_root / "words.json"))
    tok = pipeline.tokenizer_for(Data(tokenizer="words.json"))
    assert tok("red zebra box").input_ids == [
        tok.convert_tokens_to_ids("red"),
        2,
        tok.convert_tokens_to_ids("box"),
    ]
    assert min(tok.convert_tokens_to_ids(["red", "box", "[PAD]"])) >= O.SPECIAL_IDS


def test_bad_tokenizer_paths_name_the_parameter(data_root):
    with pytest.raises(FileNotFoundError, match=r"tokenizer: .*missing/tokenizer\.json"):
        pipeline.tokenizer_for(Data(tokenizer="missing/tokenizer.json"))
    (data_root / "garbage.json").write_text("not json")
    with pytest.raises(ValueError, match=r"tokenizer: .*garbage\.json is not a usable"):
        pipeline.tokenizer_for(Data(tokenizer="garbage.json"))
    (data_root / "empty").mkdir()
    with pytest.raises(ValueError, match=r"tokenizer: .*empty is not a usable"):
        pipeline.tokenizer_for(Data(tokenizer="empty"))


def test_a_unigram_vocabulary_is_refused_clearly(data_root):
    core = Tokenizer(models.Unigram([("<unk>", 0.0), ("red", -1.0), ("box", -2.0)], 0))
    core.save(str(data_root / "unigram.json"))
    with pytest.raises(ValueError, match="tokenizer: .*Unigram vocabulary"):
        pipeline.tokenizer_for(Data(tokenizer="unigram.json"))


def test_full_scale_params_name_a_local_tokenizer():
    from vidrepro import params as P
    from vidrepro.merlot.params import NOTEBOOKS
    from vidrepro.paths import project_root

    for name, model in NOTEBOOKS.items():
        full = P.load(model, project_root() / "params/merlot/full" / f"{name}.yaml")
        tiny = P.load(model, project_root() / "params/merlot/tiny" / f"{name}.yaml")
        assert full.tokenizer.endswith("tokenizer.json") and tiny.tokenizer == ""
    assert json.loads(json.dumps(Data.model_json_schema()))["properties"]["tokenizer"][
        "description"
    ].startswith("empty: a word-level vocabulary")
