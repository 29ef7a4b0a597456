"""Notebook hygiene rules, and the repository's notebooks and params keeping them."""

import json

import nbformat
import pytest
from demo_project import notebook

from vidrepro import cli, colab, notebooks, params, tables
from vidrepro.paths import project_root

ROOT = project_root()


def write(tmp_path, nb, name="nb.ipynb"):
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_clean_notebook_has_no_problems(tmp_path):
    path = write(tmp_path, notebook("a = 1\nb = 'x'", "print(a)"))
    assert notebooks.problems(path) == []
    assert notebooks.parameter_values(notebooks.read(path)) == {"a": 1, "b": "x"}


def test_each_rule_is_caught(tmp_path):
    nb = notebook("a = 1", "def f(x):\n    y = x\n    y += 1\n    y *= 2\n    y -= 3\n    return y")
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", text="hi")]
    nb.cells[2].metadata["tags"] = []
    nb.cells.insert(0, nbformat.v4.new_code_cell("x = 1"))
    nb.cells[2].source = "print('no colab')"
    found = "\n".join(notebooks.problems(write(tmp_path, nb)))
    assert "first cell must be markdown" in found
    assert "no Colab setup cell" in found
    assert "0 cells tagged 'parameters'" in found
    assert "cell 4 has outputs" in found
    assert "function 'f' is 6 lines" in found


def test_identify_and_locate_are_inverse(tmp_path):
    top, paper = tmp_path / "notebooks/00_data.ipynb", tmp_path / "notebooks/merlot/01_x.ipynb"
    assert notebooks.identify(top) == ("kit", "00_data")
    assert notebooks.identify(paper) == ("merlot", "01_x")
    assert notebooks.locate(tmp_path, "kit", "00_data") == top
    assert notebooks.locate(tmp_path, "merlot", "01_x") == paper


def test_two_parameter_cells_and_strip(tmp_path):
    nb = notebook("a = 1", "b = 2")
    nb.cells[3].metadata["tags"] = ["parameters"]
    nb.cells[3].execution_count = 3
    path = write(tmp_path, nb)
    found = notebooks.problems(path)
    assert any("2 cells tagged 'parameters'" in m for m in found)
    assert notebooks.strip(path) is True and notebooks.strip(path) is False
    assert json.loads(path.read_text())["cells"][3]["execution_count"] is None


def test_parameters_cell_must_equal_tiny_params(demo_root):
    path = demo_root / "notebooks/demo/01_make.ipynb"
    assert notebooks.problems(path, demo_root) == []
    (demo_root / "params/demo/tiny/01_make.yaml").write_text("size: 4\nfail: false\n")
    assert "differs from its tiny params on ['size']" in notebooks.problems(path, demo_root)[0]


def test_magics_do_not_break_the_thinness_check(tmp_path):
    nb = notebook("a = 1", "!ls\n%matplotlib inline\nprint(a)")
    assert notebooks.problems(write(tmp_path, nb)) == []


@pytest.mark.parametrize("path", notebooks.all_notebooks(ROOT), ids=lambda p: p.stem)
def test_repo_notebook_is_clean_and_matches_tiny_params(path):
    assert notebooks.problems(path, ROOT) == []


def test_every_notebook_has_params_at_both_scales():
    for path in notebooks.all_notebooks(ROOT):
        for scale in params.SCALES:
            assert params.params_path(ROOT, *notebooks.identify(path), scale).exists()


def test_repo_tables_and_params_validate_at_both_scales(capsys):
    assert cli.main(["check"]) == 0
    out = capsys.readouterr().out
    assert out.count("ok  ") >= len(tables.available_tables(ROOT)) * 2


def test_colab_cell_and_badge_are_written_from_one_place(tmp_path):
    source = ROOT / "notebooks" / "bmhrl" / "01_warmstart.ipynb"
    path = tmp_path / "notebooks" / "bmhrl" / "01_warmstart.ipynb"
    path.parent.mkdir(parents=True)
    path.write_text(source.read_text())
    assert notebooks.colab_problems(path, tmp_path) == []
    assert "colab.setup(java=True)" in colab.cell("bmhrl")  # METEOR rewards need Java
    assert "colab.setup(java=False)" in colab.cell("merlot")
    nb = notebooks.read(path)
    cell = next(c for c in nb["cells"] if notebooks.COLAB_MARKER in notebooks.source(c))
    cell["source"] = notebooks.source(cell).replace("vidrepro/vidrepro", "someone/fork")
    nb["cells"][0]["source"] = notebooks.source(nb["cells"][0]).replace("vidrepro/vidrepro", "x/y")
    path.write_text(json.dumps(nb))
    found = notebooks.colab_problems(path, tmp_path)
    assert len(found) == 2 and "Colab cell" in found[0] and "badge" in found[1]
    assert notebooks.write_colab(path, tmp_path) and not notebooks.write_colab(path, tmp_path)
    assert notebooks.colab_problems(path, tmp_path) == []
    assert notebooks.problems(path) == []  # the cell still parses and stays thin
