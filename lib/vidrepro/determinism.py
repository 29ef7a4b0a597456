"""Same seed, same numbers: the process settings every run of the kit shares.

How many threads split a float sum decides its rounding, so the thread count is chosen in one
place (``$VIDREPRO_THREADS``, else ``$OMP_NUM_THREADS`` as ``torchrun`` sets it, else 1, which
repeats on any core count and lets two runs share two cores) and recorded in each run's
provenance. Notebook kernels get the settings through their environment (torch and the
BLAS libraries read ``OMP_NUM_THREADS`` when they start; ``PYTHONHASHSEED`` fixes the order of
sets of strings) and call :func:`configure` through ``runs.run_dir``; command-line stages call
it before they build anything.
"""

from __future__ import annotations

import os
import platform
import random

THREADS_ENV = "VIDREPRO_THREADS"


def threads() -> int:
    """Intra-op threads for torch, BLAS and XLA: ``$VIDREPRO_THREADS``, ``$OMP_NUM_THREADS`` or
    1."""
    name = THREADS_ENV if os.environ.get(THREADS_ENV) else "OMP_NUM_THREADS"
    given = os.environ.get(name, "")
    if given:
        try:
            n = int(given)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"${name}={given!r}: expected a whole number >= 1")
        return n
    return 1


# Widest first: numpy's names for the vector instruction sets it detects.
ISA_LADDER = (
    "AVX512_SPR",
    "AVX512_ICL",
    "AVX512_CLX",
    "AVX512_SKX",
    "AVX512F",
    "AVX2",
    "AVX",
    "SSE42",
    "SVE",
    "ASIMD",
)


def cpu() -> str:
    """The processor and the widest vector instructions it offers, e.g. ``AMD EPYC (AVX512_ICL)``:
    torch, the BLAS libraries and XLA pick their kernels by instruction set, and another set
    rounds float sums differently, so a seed repeats its numbers only on the same kind."""
    from numpy._core._multiarray_umath import __cpu_features__ as features

    model = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    isa = next((name for name in ISA_LADDER if features.get(name)), "baseline")
    return f"{model} ({isa})"


def environment() -> dict[str, str]:
    """Variables a child process (a notebook kernel, a worker) must start with."""
    n = str(threads())
    return {
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        THREADS_ENV: n,
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",  # deterministic cuBLAS reductions on GPUs
        "XLA_FLAGS": _xla_flags(os.environ.get("XLA_FLAGS", ""), threads()),
    }


def _xla_flags(given: str, n: int) -> str:
    """``given`` with XLA's CPU thread count set to ``n`` (other flags, e.g. a fake device
    count, kept)."""
    kept = [
        f
        for f in given.split()
        if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism_threads"))
    ]
    eigen = "true" if n > 1 else "false"
    return " ".join(
        [*kept, f"--xla_cpu_multi_thread_eigen={eigen}", f"intra_op_parallelism_threads={n}"]
    )


def configure(seed: int | None = None) -> int:
    """Pin torch's threads, ask for deterministic kernels (a warning where an op has none), and
    seed Python's, numpy's and torch's global generators when ``seed`` is given. Returns the
    thread count."""
    import numpy as np
    import torch

    n = threads()
    torch.set_num_threads(n)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    return n
