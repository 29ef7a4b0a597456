"""The runner and tables on the scratch demo project (tests/helpers/demo_project.py)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from demo_project import executions

from vidrepro import cli, determinism, runs, tables
from vidrepro import params as P


@pytest.mark.slow
def test_run_writes_executed_notebook_and_provenance(demo_root, capsys):
    out = demo_root / "runs" / "one"
    rc = cli.main(["run", "notebooks/demo/01_make.ipynb", "-p", "size=5", "--out", str(out)])
    assert rc == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["status"] == "finished"
    assert record["metrics"] == {"size": 5}
    assert record["params"] == {"size": 5, "fail": False, "seed": 0}
    assert record["params_hash"] == P.Params.digest(runs_params(record))
    prov = record["provenance"]
    assert {"git_commit", "code_version", "packages", "host", "start", "duration_s"} <= set(prov)
    assert prov["packages"]["papermill"] and prov["duration_s"] > 0
    assert (out / "01_make.ipynb").exists()
    assert (out / record["outputs"]["artifact"]).read_text() == "xxxxx"


def test_kernels_talk_over_unix_sockets_not_tcp(demo_root, capfd):
    """The kernel's sockets live in a private folder that is gone afterwards; no port is
    opened, so ipykernel has no unencrypted TCP to warn about."""
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("vidrepro-ipc-*"))
    assert (
        cli.main(
            [
                "run",
                "notebooks/demo/01_make.ipynb",
                "-p",
                "size=3",
                "--out",
                str(demo_root / "runs" / "ipc"),
            ]
        )
        == 0
    )
    captured = capfd.readouterr()
    assert "size  3" in captured.out
    assert "TCP" not in captured.err
    assert set(Path(tempfile.gettempdir()).glob("vidrepro-ipc-*")) == before


def runs_params(record):
    from demo_project import MakeParams

    return MakeParams(**record["params"])


def test_run_rejects_bad_override_before_running(demo_root, capsys):
    rc = cli.main(["run", "notebooks/demo/01_make.ipynb", "-p", "sizee=5"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "01_make.yaml" in err and "'sizee'" in err and "did you mean 'size'" in err
    assert executions(demo_root) == []


@pytest.mark.slow
def test_reproduce_shares_steps_reuses_and_writes_results(demo_root):
    frame = tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    # The two rows start from the same `make` step: it runs once.
    assert sorted(executions(demo_root)) == ["make", "score", "score"]
    assert frame["row"].tolist() == ["plain", "scaled"]
    assert frame["score"].tolist() == [3.0, 6.0]  # 3 chars x scale / 100, x100 in the table
    assert frame["score_published"].tolist() == [2.5, ""]
    for name in ("demo.csv", "demo_findings.csv", "demo.md", "demo.png"):
        assert (demo_root / "results" / name).stat().st_size > 0
    md = (demo_root / "results" / "demo.md").read_text()
    assert "make reproduce TABLE=demo SCALE=tiny" in md
    env = json.loads((demo_root / "results" / "demo_env.json").read_text())
    assert env["cpu"] == determinism.cpu() and env["threads"] == determinism.threads()
    assert env["packages"]["numpy"] and f"Written on {env['cpu']}" in md
    # items 3 - 4.5 .. 3 + 4.5 (sd 2.9, 10 items): the row's interval is about +-1.8
    row = frame.set_index("row").loc["plain"]
    assert 1.0 < row["score_lo"] < 1.6 and 4.4 < row["score_hi"] < 5.0
    assert f"| plain | plain | 3.00 ± {(row['score_hi'] - row['score_lo']) / 2:.2f} |" in md
    # every item gains exactly 3 points from scaling: a paired interval of width 0
    assert (
        "scaling raises the score: **holds** (scaled - plain: +3.00 score, 95% CI +3.00 to +3.00)"
    ) in md
    assert "scaling lowers the score: **reversed** (plain - scaled: -3.00 score" in md
    found = pd.read_csv(demo_root / "results" / "demo_findings.csv")
    assert found["verdict"].tolist() == ["holds", "reversed"]
    assert pd.read_csv(demo_root / "results" / "demo.csv")["score"].tolist() == [3.0, 6.0]

    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    assert len(executions(demo_root)) == 3  # unchanged inputs: everything reused

    left = [m.parent / "ckpt" for m in (demo_root / "runs").rglob("metrics.json")]
    for ckpt in left:  # what a training step leaves, and would resume from
        ckpt.mkdir()
    tables.reproduce("demo", "tiny", root=demo_root, progress=False, force=True)
    assert len(executions(demo_root)) == 6
    assert not any(ckpt.exists() for ckpt in left)  # forced: started from nothing


@pytest.mark.slow
def test_seeds_average_rows_and_report_their_spread(demo_root):
    frame = tables.reproduce("demo", "tiny", root=demo_root, progress=False, seeds=3)
    # seeds 0, 1, 2 make 3, 4, 5 chars: plain scores 3, 4, 5 (x1), scaled 6, 8, 10
    assert frame["score"].tolist() == [4.0, 8.0] and frame["score_std"].tolist() == [1.0, 2.0]
    assert sorted(executions(demo_root)) == ["make"] * 3 + ["score"] * 6
    md = (demo_root / "results" / "demo_3seeds.md").read_text()
    assert "make reproduce TABLE=demo SCALE=tiny SEEDS=3" in md
    assert frame["score_seed2"].tolist() == [5.0, 10.0]
    # seeds disagree by 1 and 2 points: resampling seeds widens the paired interval
    assert "scaling raises the score: **holds** (scaled - plain: +4.00 score, 95% CI +3." in md
    assert not (demo_root / "results" / "demo.md").exists()
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)  # seed 0: all reused
    assert len(executions(demo_root)) == 9


@pytest.mark.slow
def test_some_rows_run_without_replacing_the_results(demo_root):
    frame = tables.reproduce("demo", "tiny", root=demo_root, progress=False, rows=["scaled"])
    assert frame["row"].tolist() == ["scaled"] and frame["score"].tolist() == [6.0]
    assert not (demo_root / "results" / "demo.md").exists()


@pytest.mark.slow
def test_changed_params_rerun_the_step_and_its_dependents(demo_root):
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    (demo_root / "params/demo/tiny/01_make.yaml").write_text("size: 4\nfail: false\n")
    frame = tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    assert sorted(executions(demo_root)[3:]) == ["make", "score", "score"]
    assert frame["score"].tolist() == [4.0, 8.0]


@pytest.mark.slow
def test_failing_cell_stops_with_error_and_keeps_finished_steps(demo_root, capsys):
    spec = (demo_root / "params/tables/demo.yaml").read_text()
    spec = spec.replace(
        "      - {id: make, notebook: 01_make}\n      - id: score",
        "      - {id: make, notebook: 01_make, params: {fail: true, size: 9}}\n      - id: score",
    )
    (demo_root / "params/tables/demo.yaml").write_text(spec)
    rc = cli.main(["reproduce", "demo"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "ValueError: boom" in err and "executed notebook:" in err
    executed = Path(err.split("executed notebook: ")[1].split("\n")[0])
    assert executed.exists()
    finished = [
        p
        for p in (demo_root / "runs").rglob("metrics.json")
        if json.loads(p.read_text())["status"] == "finished"
    ]
    assert len(finished) == 2  # the first row's two steps stay
    failed = json.loads((executed.parent / "metrics.json").read_text())
    assert failed["status"] == "failed" and "ValueError: boom" in failed["error"]
    assert not (demo_root / "results" / "demo.csv").exists()
    status = tables.step_status("demo", root=demo_root)
    assert status.set_index(["row", "step"])["status"].to_dict() == {
        ("plain", "make"): "finished",
        ("plain", "score"): "finished",
        ("scaled", "make"): "failed",
        ("scaled", "score"): "waiting",
    }


@pytest.mark.slow
def test_interrupted_step_is_rerun_not_reused(demo_root):
    """Kill a reproduce mid-step; the half-done step must not count as finished."""
    (demo_root / "hold").touch()  # the make notebook waits while this file exists
    code = (
        "import demo_project, sys; demo_project.register(); from vidrepro import cli; "
        "sys.exit(cli.main(['reproduce', 'demo']))"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "helpers")}
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=demo_root,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 60
        while executions(demo_root) != ["make"] and time.time() < deadline:
            time.sleep(0.2)
        assert executions(demo_root) == ["make"], "the step never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    record = next((demo_root / "runs").rglob("metrics.json"))
    assert json.loads(record.read_text())["status"] == "running"
    (demo_root / "hold").unlink()
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    assert executions(demo_root) == ["make", "make", "score", "score"]
    assert json.loads(record.read_text())["status"] == "finished"  # the same folder, finished


def test_full_scale_specs_are_validated_without_running(demo_root):
    tables.check_table(demo_root, "demo", "full")
    (demo_root / "params/demo/full/02_score.yaml").write_text('artifact: ""\nscael: 1.0\n')
    with pytest.raises(P.ParamsError, match=r"full/02_score.yaml.*\n.*'scael'"):
        tables.check_table(demo_root, "demo", "full")
    assert executions(demo_root) == []


def test_table_spec_errors_name_the_problem(demo_root):
    path = demo_root / "params/tables/demo.yaml"
    good = path.read_text()
    path.write_text(good.replace("${make.artifact}", "${mkae.artifact}", 1))
    with pytest.raises(P.ParamsError, match="names no earlier step"):
        tables.load_table(demo_root, "demo")
    path.write_text(good.replace("notebook: 02_score,", "notebook: 03_missing,"))
    with pytest.raises(P.ParamsError, match="03_missing.ipynb does not exist"):
        tables.load_table(demo_root, "demo")
    path.write_text(good.replace("metrics: [score]", "metrix: [score]"))
    with pytest.raises(P.ParamsError, match="demo.yaml.*"):
        tables.load_table(demo_root, "demo")
    path.write_text(good.replace("pairs: [[scaled, plain]]", "pairs: [[scaled, plian]]"))
    with pytest.raises(P.ParamsError, match=r"unknown rows \['plian'\]"):
        tables.load_table(demo_root, "demo")
    with pytest.raises(P.ParamsError, match=r"no such table \(available: demo\)"):
        tables.load_table(demo_root, "nope")


def test_code_version_of_a_paper_ignores_other_papers_and_the_runner_not_configs(tmp_path):
    package = tmp_path / "pkg"
    for sub in ("paper_a", "paper_b"):
        (package / sub).mkdir(parents=True)
        (package / sub / "params.py").write_text("NOTEBOOKS = {}\n")
    (package / "training.py").write_text("x = 1\n")
    before = runs.code_version("paper_a", package)
    (package / "paper_b" / "model.py").write_text("y = 2\n")
    (package / "tables.py").write_text("z = 3\n")
    assert runs.code_version("paper_a", package) == before
    assert runs.code_version(None, package) != runs.code_version("paper_a", package)
    (package / "training.py").write_text("x = 2\n")
    assert runs.code_version("paper_a", package) != before
    (package / "paper_a" / "model.py").write_text("w = 0\n")
    assert runs.code_version("paper_a", package) != runs.code_version("paper_b", package)
    (package / "paper_a" / "configs").mkdir()
    (package / "paper_a" / "configs" / "tiny.json").write_text('{"initializer_range": 0.02}')
    with_config = runs.code_version("paper_a", package)
    (package / "paper_a" / "configs" / "tiny.json").write_text('{"initializer_range": 1e-10}')
    assert runs.code_version("paper_a", package) != with_config  # model configs count too


def test_step_key_changes_with_the_libraries_not_with_the_kits_version(tmp_path, monkeypatch):
    notebook = tmp_path / "nb.ipynb"
    notebook.write_text("{}")
    versions = {"vidrepro": "0.1.0", "numpy": "2.4.6", "torch": "2.14.1"}
    monkeypatch.setattr(runs, "package_versions", lambda: dict(versions))
    key = lambda: runs.step_key(notebook, P.Params(), {}, "code")
    before = key()
    versions["vidrepro"] = "0.2.0"  # the source counts through the code version instead
    assert key() == before
    versions["numpy"] = "2.3.0"
    assert key() != before


@pytest.mark.slow
def test_verify_reruns_from_nothing_and_reports_each_value(demo_root, capsys):
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    assert cli.main(["reproduce", "demo", "--verify"]) == 0
    out = capsys.readouterr().out
    assert "same       plain: all" in out and "every value repeats" in out
    # the rerun executed every step again, in its own folder, not reusing the table's runs
    assert sorted(executions(demo_root)) == ["make"] * 2 + ["score"] * 4
    assert list((demo_root / "runs" / "verify").glob("demo-*/runs/tiny/demo/02_score/*"))
    csv = demo_root / "results" / "demo.csv"
    committed = pd.read_csv(csv)
    committed.loc[1, "score"] = 6.01
    committed.to_csv(csv, index=False)
    assert cli.main(["reproduce", "demo", "--verify"]) == 1
    out = capsys.readouterr().out
    assert "DIFFERENT  scaled score: committed 6.01, rerun 6.0" in out
    assert "some values differ" in out and "committed on" not in out  # the same machine
    env = demo_root / "results" / "demo_env.json"
    env.write_text(json.dumps({**json.loads(env.read_text()), "cpu": "Other CPU (AVX2)"}))
    assert cli.main(["reproduce", "demo", "--verify"]) == 1
    assert f"cpu: committed on Other CPU (AVX2), rerun on {determinism.cpu()}" in (
        capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "marker,verdict",
    [
        ("by_construction: the scale is set by hand", "by construction: the scale is set by hand"),
        ("not_testable: {tiny: nothing varies}", "not testable at this scale: nothing varies"),
    ],
)
@pytest.mark.slow
def test_findings_marked_in_the_spec_say_why(demo_root, marker, verdict):
    spec = (demo_root / "params/tables/demo.yaml").read_text()
    spec = spec.replace("pairs: [[plain, scaled]]}", f"pairs: [[plain, scaled]], {marker}}}")
    (demo_root / "params/tables/demo.yaml").write_text(spec)
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    md = (demo_root / "results" / "demo.md").read_text()
    assert f"scaling lowers the score: **{verdict}**" in md
    assert "(plain - scaled: -3.00 score" in md  # the difference is still reported
    found = pd.read_csv(demo_root / "results" / "demo_findings.csv")
    assert found["verdict"].tolist() == ["holds", verdict.split(":")[0]]


@pytest.mark.slow
def test_rows_side_by_side_run_a_shared_step_once_and_give_the_same_table(demo_root):
    (demo_root / "hold").write_text("")  # `make` waits: both rows reach it while it runs
    timer = threading.Timer(1.0, (demo_root / "hold").unlink)
    timer.start()
    parallel = tables.reproduce("demo", "tiny", root=demo_root, progress=False, jobs=2)
    timer.join()
    assert sorted(executions(demo_root)) == ["make", "score", "score"]
    serial = tables.reproduce("demo", "tiny", root=demo_root, progress=False, jobs=1, force=True)
    pd.testing.assert_frame_equal(parallel, serial)


@pytest.mark.slow
def test_command_line_lists_parameters_steps_and_version(demo_root, capsys):
    assert cli.main(["params", "notebooks/demo/01_make.ipynb", "--scale", "tiny"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("demo/01_make at tiny scale")
    assert [line.split()[:2] for line in lines[1:]] == [
        ["size", "int"],
        ["fail", "bool"],
        ["seed", "int"],
    ]
    assert cli.main(["runs", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("not run") == 2 and out.count("waiting") == 2  # shared make, two scores
    tables.reproduce("demo", "tiny", root=demo_root, progress=False)
    assert cli.main(["runs", "demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("finished") == 4 and "artifact: runs/tiny/demo/01_make/" in out
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.startswith("vidrepro ")
    assert cli.main(["reproduce", "demo", "--rows", "nosuch"]) == 2
    assert "(rows: plain, scaled)" in capsys.readouterr().err


def test_full_scale_names_missing_data_before_starting_a_kernel(tmp_path, monkeypatch):
    from vidrepro.paths import project_root

    root = project_root()
    monkeypatch.setenv("VIDREPRO_DATA", str(tmp_path))
    assert tables.data_inputs(root, "bmhrl_dense_captioning", "tiny") == {}  # synthetic
    inputs = tables.data_inputs(root, "bmhrl_dense_captioning", "full")
    assert {p for _, p in inputs.values()} == {
        tmp_path / "activitynet",
        tmp_path / "glove/glove.840B.300d.txt",
    }
    with pytest.raises(P.ParamsError) as e:
        tables.reproduce("bmhrl_dense_captioning", "full", root=root, progress=False)
    assert str(tmp_path / "activitynet") in str(e.value)
    assert "dense_root = 'activitynet'" in str(e.value) and "$VIDREPRO_DATA" in str(e.value)
    (tmp_path / "activitynet").mkdir()
    (tmp_path / "glove").mkdir()
    (tmp_path / "glove/glove.840B.300d.txt").write_text("")
    tables.check_data(root, "bmhrl_dense_captioning", "full")  # everything there: no error


def test_check_env_reports_java_devices_and_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VIDREPRO_DATA", str(tmp_path))
    assert cli.main(["check", "--env", "--scale", "tiny"]) == 0  # tiny: synthetic data only
    out = capsys.readouterr().out
    assert out.startswith("java") and "torch_device" in out
    assert "\npackages " in out  # installed versions against constraints.txt
    assert "ok       object_states: synthetic data (tiny)" in out
    assert cli.main(["check", "--env"]) == 1  # full: nothing under the empty data folder
    assert f"MISSING  object_states: {tmp_path}" in capsys.readouterr().out


@pytest.mark.slow
def test_two_processes_reproducing_one_step_run_it_once(demo_root):
    """A second ``reproduce`` of a step another process is running says who holds it, waits,
    then reuses it: the step runs once, in one folder."""
    import vidrepro

    (demo_root / "hold").touch()  # the make notebook waits while this file exists
    code = (
        "import demo_project, sys; demo_project.register(); from vidrepro import cli; "
        "sys.exit(cli.main(['reproduce', 'demo', '--rows', 'plain']))"
    )
    here = [Path(__file__).parent / "helpers", Path(vidrepro.__file__).parents[1]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, here))}
    procs, outs = [], []
    for _ in range(2):
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code],
                cwd=demo_root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
        outs.append([])
        threading.Thread(
            target=lambda p=procs[-1], o=outs[-1]: o.extend(p.stdout), daemon=True
        ).start()
        deadline = time.time() + 90
        while executions(demo_root) != ["make"] and time.time() < deadline:
            time.sleep(0.2)
    deadline = time.time() + 90
    while not any("waiting for" in line for line in outs[1]) and time.time() < deadline:
        time.sleep(0.2)
    (demo_root / "hold").unlink()
    for p in procs:
        p.wait(timeout=120)
    first, second = ("".join(o) for o in outs)
    assert [p.returncode for p in procs] == [0, 0], (first, second)
    assert sorted(executions(demo_root)) == ["make", "score"]  # each step ran once
    assert f"make: waiting for pid {procs[0].pid} on" in second
    assert second.count(": reused runs/tiny/demo/") == 2


def test_a_damaged_record_is_a_named_error(demo_root, capsys):
    tables.reproduce("demo", "tiny", root=demo_root, rows=["plain"], progress=False)
    record = next((demo_root / "runs").rglob("01_make/*/metrics.json"))
    record.write_text('{"status": "finished", ')  # cut short outside the kit
    assert cli.main(["reproduce", "demo", "--rows", "plain"]) == 1
    err = capsys.readouterr().err
    assert f"error: {record}: not valid JSON" in err and "delete its folder" in err
