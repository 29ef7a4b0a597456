"""What every benchmark records about the machine it ran on (imported by the bench scripts)."""

from __future__ import annotations

import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line for line in f if line.startswith("model name"))
        return model.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor()


def describe(**extra: object) -> dict[str, object]:
    """Platform, CPU, cores, the load while the bench ran, Python; plus ``extra``."""
    return {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": os.getloadavg()[0],
        "python": platform.python_version(),
        **extra,
    }
