import pytest

from vidrepro import params as P


class Model(P.Params):
    lr: float
    num_frames: int = 8
    train_vit: bool = False
    name: str = "run"
    frames: list[int] = [4, 8]


def write(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_float_strings_without_a_dot_are_floats(tmp_path):
    path = write(tmp_path, "lr: 1e-4\nnum_frames: 4\n")
    assert P.load_yaml(path) == {"lr": 1e-4, "num_frames": 4}
    assert isinstance(P.load(Model, path).lr, float)
    assert P.parse_value("5E-6") == 5e-6
    assert P.parse_value("-2e3") == -2000.0
    assert P.parse_value("3") == 3 and isinstance(P.parse_value("3"), int)


def test_misspelled_key_names_key_file_and_suggestion(tmp_path):
    path = write(tmp_path, "lr: 1e-4\nnum_frame: 4\n")
    with pytest.raises(P.ParamsError) as e:
        P.load(Model, path)
    msg = str(e.value)
    assert str(path) in msg and "'num_frame'" in msg and "did you mean 'num_frames'" in msg


def test_wrong_type_and_missing_key(tmp_path):
    with pytest.raises(P.ParamsError, match=r"key 'num_frames': .*got 'eight'"):
        P.load(Model, write(tmp_path, "lr: 0.1\nnum_frames: eight\n"))
    with pytest.raises(P.ParamsError, match=r"p.yaml.*\n.*key 'lr': required but missing"):
        P.load(Model, write(tmp_path, "num_frames: 4\n"))


def test_bad_yaml_and_non_mapping_name_the_file(tmp_path):
    with pytest.raises(P.ParamsError, match=r"bad.yaml: not valid YAML"):
        P.load(Model, write(tmp_path, "lr: [1,\n", "bad.yaml"))
    with pytest.raises(P.ParamsError, match=r"list.yaml: expected a mapping"):
        P.load(Model, write(tmp_path, "- 1\n- 2\n", "list.yaml"))
    with pytest.raises(P.ParamsError, match=r"nope.yaml: file not found"):
        P.load(Model, tmp_path / "nope.yaml")


def test_overrides_are_typed_and_checked(tmp_path):
    path = write(tmp_path, "lr: 0.1\n")
    over = P.parse_overrides(
        ["lr=1e-4", "num_frames=16", "train_vit=true", "frames=[2, 3]", "name=lora_8f"]
    )
    p = P.load(Model, path, over)
    assert (p.lr, p.num_frames, p.train_vit, p.frames, p.name) == (
        1e-4,
        16,
        True,
        [2, 3],
        "lora_8f",
    )
    with pytest.raises(P.ParamsError, match=r"(?s)with overrides .*key 'lrr': unknown.*'lr'"):
        P.load(Model, path, P.parse_overrides(["lrr=1"]))
    with pytest.raises(P.ParamsError, match="expected key=value"):
        P.parse_overrides(["lr"])


def test_digest_changes_with_values():
    a, b = Model(lr=0.1), Model(lr=0.2)
    assert a.digest() == Model(lr=0.1).digest() != b.digest()


def test_schema_lookup_errors_are_clear():
    with pytest.raises(P.ParamsError, match="no parameter models for paper 'nopaper'"):
        P.schema_for("nopaper", "01_x")


@pytest.mark.parametrize(
    "text, key",
    [
        ("lr: 1.0e-4\nnum_frames: true\n", "num_frames"),  # a bool is not a count
        ("lr: '5e-5'\n", "lr"),  # a string is not a number
        ("lr: 1.0e-4\nnum_frames: 8.0\n", "num_frames"),  # nor is a float
        ("lr: 1.0e-4\ntrain_vit: 'yes'\n", "train_vit"),
    ],
)
def test_values_are_never_coerced(tmp_path, text, key):
    with pytest.raises(P.ParamsError, match=rf"p.yaml: invalid Model\n  key '{key}'"):
        P.load(Model, write(tmp_path, text))


def test_a_whole_number_is_a_float():
    assert P.validate(Model, {"lr": 1}, "x").lr == 1.0


def test_model_names_are_checked_against_what_exists(tmp_path):
    from vidrepro.merlot.params import PretrainParams
    from vidrepro.object_states.params import TrainParams

    with pytest.raises(P.ParamsError, match=r"'basee' is not a MERLOT config.*did you mean 'base'"):
        P.validate(PretrainParams, {"model": "basee", "steps": 1, "lr": 1.0, "batch_size": 1}, "x")
    values = {"steps": 1, "batch_size": 1, "lr": 1.0, "lr_backbone": 1.0}
    assert P.validate(TrainParams, {**values, "model": "ViT-L-14-quickgelu"}, "x")
    with pytest.raises(P.ParamsError, match=r"did you mean 'ViT-L-14-quickgelu'"):
        P.validate(TrainParams, {**values, "model": "ViT-L-14-quickgelux"}, "x")
