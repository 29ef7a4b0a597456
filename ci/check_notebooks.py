"""Notebook hygiene for CI: outputs stripped, one `parameters` cell, markdown intro, Colab cell,
thin cells, the parameters cell equal to the tiny YAML, the Colab cell and badge as
`vidrepro.colab` writes them. `--fix` strips outputs and rewrites Colab cells in place."""

import argparse
import sys

from vidrepro import notebooks
from vidrepro.paths import project_root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--fix", action="store_true", help="strip outputs, rewrite Colab cells before checking"
    )
    args = parser.parse_args()
    root = project_root()
    found = []
    paths = notebooks.all_notebooks(root)
    for path in paths:
        if args.fix and notebooks.strip(path):
            print(f"stripped {path.relative_to(root)}")
        if args.fix and notebooks.write_colab(path, root):
            print(f"Colab cell and badge rewritten: {path.relative_to(root)}")
        found += notebooks.problems(path, root) + notebooks.colab_problems(path, root)
    for msg in found:
        print(msg, file=sys.stderr)
    print(f"checked {len(paths)} notebooks: {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
