"""Notebook hygiene for CI: outputs stripped, one `parameters` cell, markdown intro, Colab cell,
thin cells, and the parameters cell equal to the tiny YAML. `--fix` strips outputs in place."""

import argparse
import sys

from vidrepro import notebooks
from vidrepro.paths import project_root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fix", action="store_true", help="strip outputs before checking")
    args = parser.parse_args()
    root = project_root()
    found = []
    paths = notebooks.all_notebooks(root)
    for path in paths:
        if args.fix and notebooks.strip(path):
            print(f"stripped {path.relative_to(root)}")
        found += notebooks.problems(path, root)
    for msg in found:
        print(msg, file=sys.stderr)
    print(f"checked {len(paths)} notebooks: {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
