"""What an install gets: pyproject.toml's ranges, constraints.txt's exact versions."""

import ast
import json
import subprocess
import sys
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from vidrepro import colab, runs

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[str]:
    """pyproject.toml's dependencies and its dev extra, as written."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + project["optional-dependencies"]["dev"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert canonicalize_name(name) not in pins, f"{name} pinned twice"
            pins[canonicalize_name(name)] = version
    return pins


def test_constraints_pin_every_dependency_inside_its_range():
    pins = _pins()
    for text in _requirements():
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name in pins, f"constraints.txt does not pin {req.name}"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject's {req}"
        )


def test_oldest_pins_are_pyprojects_lower_bounds():
    """``make test-oldest`` installs every dependency at its lower bound."""
    oldest = {
        canonicalize_name(n): v
        for n, _, v in (
            line.partition("==")
            for line in (ROOT / "ci" / "oldest.txt").read_text().splitlines()
            if line and not line.startswith("#")
        )
    }
    for text in _requirements():
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert req.specifier.contains(oldest[name]), f"ci/oldest.txt: {name}=={oldest[name]}"
        bounds = [s.version for s in req.specifier if s.operator in (">=", "==")]
        if name not in ("torch", "torchvision"):  # tested at constraints.txt's builds
            assert bounds == [oldest[name]], f"ci/oldest.txt: {name} is not at {req}'s bound"


def test_conda_environment_lists_pyprojects_dependencies_and_java():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = next(d["pip"] for d in env if isinstance(d, dict))
    assert [d for d in pip if not d.startswith("-e")] == _requirements()
    assert "-e ." in pip and any(str(d).startswith("openjdk") for d in env)


def test_off_constraints_names_each_package_not_at_its_pin(tmp_path):
    numpy = metadata.version("numpy")
    (tmp_path / "constraints.txt").write_text(
        f"# a comment\nnumpy=={numpy}\npyyaml==0.0.1  # too old\nno-such-package==1.0\n"
    )
    assert runs.off_constraints(tmp_path) == {
        "pyyaml": f"{metadata.version('pyyaml')} (0.0.1)",
        "no-such-package": "missing (1.0)",
    }
    (tmp_path / "constraints.txt").write_text("numpy>=1\n")
    with pytest.raises(ValueError, match=r"constraints.txt:1: expected name==version"):
        runs.off_constraints(tmp_path)


# A Colab runtime's own builds (googlecolab/backend-info's pip freeze of its GPU and TPU runtimes).
COLAB_RUNTIMES = {
    "gpu": {
        "torch": "2.11.0+cu128",
        "torchvision": "0.26.0+cu128",
        "torchaudio": "2.11.0+cu128",
        "jax": "0.7.2",
        "jaxlib": "0.7.2",
    },
    "tpu": {
        "torch": "2.9.0+cpu",
        "torchvision": "0.24.0+cpu",
        "torchaudio": "2.9.0+cpu",
        "jax": "0.7.2",
        "jaxlib": "0.7.2",
        "libtpu": "0.0.21.1",
    },
}


def _index_reachable() -> str | None:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15).close()
    except OSError as e:
        return f"the package index is unreachable ({e})"
    return None


def _stand_in(site: Path, name: str, version: str) -> None:
    """An installed distribution as pip sees it: metadata only, no code."""
    info = site / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "INSTALLER").write_text("pip\n")
    (info / "RECORD").write_text("")


@pytest.mark.slow
@pytest.mark.parametrize("runtime", sorted(COLAB_RUNTIMES))
def test_colab_cell_keeps_the_runtimes_frameworks(tmp_path, runtime):
    """The Colab cell's install, as a dry run in a venv holding stand-ins of the runtime's
    torch and jax, installs the kit and replaces none of them."""
    reason = _index_reachable()
    if reason:
        print(reason)
        pytest.skip(reason)
    venv = tmp_path / "venv"
    # A current pip, as Colab has (the venv's bundled one resolves four times slower).
    subprocess.run([sys.executable, "-m", "venv", "--upgrade-deps", venv], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    for name, version in COLAB_RUNTIMES[runtime].items():
        _stand_in(site, name, version)
    pins = tmp_path / "runtime-pins.txt"
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'lib')!r}); from vidrepro import colab; "
    pins.write_text(
        subprocess.run(
            [python, "-c", code + "print(colab.runtime_pins(), end='')"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert pins.read_text().split() == [f"{n}=={v}" for n, v in COLAB_RUNTIMES[runtime].items()]
    report = tmp_path / "report.json"
    args = colab.pip_args(str(ROOT), str(pins))
    done = subprocess.run(
        [python, "-m", "pip", *args, "--dry-run", "--report", report],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installs = {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "vidrepro" in installs and "transformers" in installs
    replaced = {n: installs[n] for n in COLAB_RUNTIMES[runtime] if n in installs}
    assert not replaced, f"the Colab install would replace {replaced}"


def test_colab_module_imports_only_the_standard_library_before_installing():
    """The Colab cell imports ``vidrepro.colab`` before the kit's dependencies exist."""
    tree = ast.parse((ROOT / "lib" / "vidrepro" / "colab.py").read_text())
    names = {
        (alias.name if isinstance(node, ast.Import) else node.module).split(".")[0]
        for node in tree.body
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert names - {"__future__"} <= sys.stdlib_module_names, names


@pytest.mark.slow
def test_make_lab_serves_the_notebooks_also_as_root(tmp_path):
    """``make lab`` as a user types it (root in containers and on Colab-like machines, where
    JupyterLab refuses to start without ``--allow-root``): the server answers and lists the
    papers' notebook folders."""
    import os
    import signal
    import socket
    import time

    if subprocess.run(["make", "-q", "setup"], cwd=ROOT).returncode != 0:
        pytest.skip("make setup has not been run in this checkout")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "jupyter_lab_config.py").write_text(
        f"c.ServerApp.port = {port}\nc.ServerApp.token = 'test'\nc.ServerApp.open_browser = False\n"
    )
    proc = subprocess.Popen(
        ["make", "-s", "lab"],
        cwd=ROOT,
        env={**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents?token=test"
        deadline, listing = time.time() + 90, None
        while listing is None and time.time() < deadline and proc.poll() is None:
            try:
                listing = json.load(urllib.request.urlopen(url, timeout=5))
            except OSError:
                time.sleep(0.5)
        assert listing is not None, f"make lab did not serve (exit code {proc.poll()})"
        names = {item["name"] for item in listing["content"]}
        assert {"blip2_video", "bmhrl", "merlot", "object_states"} <= names
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
