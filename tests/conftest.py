import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

import demo_project  # noqa: E402


@pytest.fixture
def demo_root(tmp_path, monkeypatch):
    """A scratch project with the demo notebooks registered; VIDREPRO_ROOT points at it."""
    demo_project.register()
    root = demo_project.build(tmp_path / "project")
    monkeypatch.setenv("VIDREPRO_ROOT", str(root))
    monkeypatch.chdir(root)
    return root
