"""Execute every notebook on its tiny params (papermill), as a user would with `vidrepro run`.

Notebooks that tables already exercise are run here too: a table may skip a notebook (an
evaluation-only or "your video" notebook), and a user opens all of them. Run folders go to
runs/ci/ and are kept for inspection when a cell fails.
"""

import sys
import time

from vidrepro import notebooks, runs
from vidrepro.paths import project_root


def main() -> int:
    root = project_root()
    failed = []
    paths = notebooks.all_notebooks(root)
    for path in paths:
        paper, name = notebooks.identify(path)
        p = notebooks.load_params(root, path, "tiny")
        start = time.monotonic()
        try:
            runs.execute(path, p, root / "runs" / "ci" / paper / name, root=root, progress=False)
            print(f"ok    {path.relative_to(root)} ({time.monotonic() - start:.0f} s)")
        except runs.StepFailed as e:
            print(f"FAIL  {path.relative_to(root)}\n{e}", file=sys.stderr)
            failed.append(path)
    print(f"notebooks: {len(paths) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
