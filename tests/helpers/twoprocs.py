"""Run a test script under ``torchrun`` with two gloo processes on this CPU.

A two-process gloo run on a 2-core machine now and then dies outside the code under test (a
rank aborting in gloo's teardown, a rendezvous port taken between choosing and binding it), so
a failed launch is retried once; the first failure's output is printed, and a second failure
fails the test with both outputs' tails."""

from __future__ import annotations

import os
import subprocess
import sys


def torchrun(script, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        *map(str, args),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **(env or {})}
    tails = []
    for _ in range(2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return done
        tails.append(f"exit {done.returncode}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}")
        print(f"torchrun failed, retrying once:\n{tails[-1]}", file=sys.stderr)
    raise AssertionError("torchrun failed twice:\n" + "\n----\n".join(tails))
