"""The terminal's status lines while notebooks run headless (vidrepro.live)."""

import io
import json

import pytest

from vidrepro import live, tables


@pytest.mark.parametrize(
    "text, state",
    [
        (
            "\rfinetune (XE):  45%|████▌     | 90/200 [00:10<00:12,  8.90it/s, loss=1.23, lr=1e-4]",
            "finetune (XE) 90/200 loss=1.23, lr=1e-4 ETA 00:12",
        ),
        ("\r  0%|          | 0/30 [00:00<?, ?it/s]", "0/30"),
        ("\rscst:  10%|█         | 12/120 [01:02<09:18,  5.17s/it]", "scst 12/120 ETA 09:18"),
        ("a log line\n", None),
        ("make: 3it [00:00, 9.8it/s]", None),  # no total: nothing to show as n/total
    ],
)
def test_parse_reads_the_last_bar(text, state):
    assert live.parse(text) == state


def test_parse_keeps_the_latest_of_several_redraws():
    text = "\rtrain:  1%|| 1/100 [00:01<01:39, 1.0it/s]\rtrain:  2%|| 2/100 [00:02<01:38, 1.0it/s]"
    assert live.parse(text) == "train 2/100 ETA 01:38"


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_the_line_is_redrawn_in_place_and_ends_with_the_outcome():
    term = Terminal()
    status = live.Status("[row] step", stream=term)
    status.shown = -1.0  # redraw on the next write
    status.write("\rtrain:  50%|█████     | 5/10 [00:01<00:01, 5.0it/s, loss=0.20]")
    assert "[row] step 0:00 | train 5/10 loss=0.20 ETA 00:01" in term.getvalue()
    status.close("finished")
    assert term.getvalue().endswith("| train 5/10 loss=0.20 ETA 00:01 | finished\n")


def test_elsewhere_plain_lines_at_most_every_interval():
    log = io.StringIO()
    status = live.Status("[row] step", stream=log, plain_every=3600)
    for i in range(1, 11):
        status.write(f"\rtrain: {i * 10}%|#| {i}/10 [00:01<00:01, 5.0it/s, loss={1 / i:.2f}]")
    assert log.getvalue() == ""  # nothing within the interval: no carriage returns in a log
    status.close("finished")
    assert log.getvalue() == "[row] step 0:00 | train 10/10 loss=0.10 ETA 00:01 | finished\n"
    status = live.Status("[row] step", stream=(log := io.StringIO()), plain_every=0.0)
    status.write("\rtrain:  50%|#| 5/10 [00:01<00:01, 5.0it/s]")
    assert log.getvalue() == "[row] step 0:00 | train 5/10 ETA 00:01\n"


@pytest.mark.slow
def test_a_table_run_shows_each_steps_training_bar(demo_root, capsys):
    """Through papermill and a real kernel: the status line of each step carries the kernel's
    bar (text, also where ipywidgets would draw a widget), and the executed notebook keeps it."""
    tables.reproduce("demo", "tiny", root=demo_root, rows=["plain"])
    err = capsys.readouterr().err
    assert "[plain] make " in err and "| make 3/3 loss=0.33" in err and "| finished" in err
    executed = next((demo_root / "runs" / "tiny" / "demo" / "01_make").glob("*/01_make.ipynb"))
    text = "".join(
        "".join(o.get("text", ""))
        for c in json.loads(executed.read_text())["cells"]
        for o in c.get("outputs", [])
    )
    assert "make: 100%|" in text and "IProgress" not in text


@pytest.mark.slow
def test_tensorboard_names_each_steps_curves_by_table_row_and_step(demo_root):
    """``runs/tensorboard/<scale>/<table>/<row>/<step>`` links to the step folders, and
    TensorBoard's own loader finds the curves there under those names."""
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer

    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    board = demo_root / "runs" / "tensorboard" / "tiny"
    multiplexer = EventMultiplexer().AddRunsFromDirectory(str(board))
    multiplexer.Reload()
    names = sorted(multiplexer.Runs())
    assert names == ["demo/plain/make/curves", "demo/scaled/make/curves"]  # the shared step, twice
    loss = multiplexer.Tensors(names[0], "loss")
    assert [e.step for e in loss] == [0, 1, 2]
    assert (board / "demo" / "plain" / "score").resolve().parent.name == "02_score"
