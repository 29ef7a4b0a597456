"""The Colab setup cell at the top of every notebook, and what it runs.

A Colab runtime comes with its own torch, torchvision, torchaudio, jax, jaxlib and libtpu, built
for its accelerator. The cell clones the kit and installs it with those packages held at the
versions the runtime has (a constraints file written from the installed distributions), so pip
adds what is missing and replaces none of them; Java (METEOR, the PTB tokenizer) is installed
when the notebook needs it. Standard library only: the cell imports this module before the
kit's dependencies are installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPOSITORY = "https://github.com/vidrepro/vidrepro"
CHECKOUT = "/content/vidrepro"
RUNTIME_PINS = "/content/runtime-pins.txt"
# Built for the runtime's accelerator: a reinstall would replace them with another build.
RUNTIME_PACKAGES = (
    "torch",
    "torchvision",
    "torchaudio",
    "jax",
    "jaxlib",
    "libtpu",
    "libtpu-nightly",
)
JAVA_GROUPS = ("kit", "blip2_video", "bmhrl")  # notebooks that score captions with METEOR


def runtime_pins() -> str:
    """``name==version`` lines for the runtime packages this Python has installed."""
    lines = []
    for name in RUNTIME_PACKAGES:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return "".join(f"{line}\n" for line in lines)


def pip_args(checkout: str = CHECKOUT, pins: str = RUNTIME_PINS) -> list[str]:
    """The install the cell runs, after ``python -m pip``."""
    return ["install", "-q", "-c", pins, "-e", checkout]


def setup(java: bool, checkout: str = CHECKOUT, pins: str = RUNTIME_PINS) -> None:
    """Install the kit beside the runtime's frameworks, Java if asked and missing; print the
    devices torch and JAX see."""
    Path(pins).write_text(runtime_pins())
    print("kept as the runtime has them:", " ".join(Path(pins).read_text().split()) or "none")
    subprocess.run([sys.executable, "-m", "pip", *pip_args(checkout, pins)], check=True)
    if java and shutil.which("java") is None:
        subprocess.run(["apt-get", "-qq", "update"], check=True)
        subprocess.run(["apt-get", "-qq", "install", "-y", "default-jre-headless"], check=True)
    import jax
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    print(f"torch {torch.__version__} ({gpu}); jax {jax.__version__} {jax.devices()}")


def cell(group: str) -> str:
    """The setup cell of a notebook in ``notebooks/<group>`` (``kit`` for the top level)."""
    return (
        "# Colab: fetch the kit and install it beside the runtime's own torch and jax (a few\n"
        "# minutes); elsewhere this cell does nothing. Pick a TPU runtime for MERLOT, a GPU one\n"
        "# for the torch papers.\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f"    !git clone -q --depth 1 {REPOSITORY} {CHECKOUT}\n"
        f'    sys.path.insert(0, "{CHECKOUT}/lib")\n'
        "    from vidrepro import colab\n"
        "\n"
        f"    colab.setup(java={group in JAVA_GROUPS})\n"
        f"    %cd {CHECKOUT}"
    )


def badge(path: str) -> str:
    """The "Open in Colab" badge of the notebook at ``path`` (relative to the repository)."""
    slug = REPOSITORY.removeprefix("https://github.com/")
    return (
        "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"(https://colab.research.google.com/github/{slug}/blob/main/{path})"
    )
