"""Checks that every notebook in notebooks/ follows the series' skeleton.

``python -m livertumor.series.notebook_checks notebooks`` exits non-zero and lists the problems;
``--strip`` removes outputs and execution counts first (what ``make format`` does).

The skeleton: a markdown title cell ``# NN · Title``; exactly one code cell tagged
``parameters`` (papermill), holding only literal assignments (papermill does not re-run
derived values after injecting parameters, so paths are derived in the next cell); outputs
stored stripped; the notebook's last code cell records its results (``outputs.record(...)``).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

TITLE = re.compile(r"^# \d\d · \S")


def _is_literal_assignment(node: ast.stmt) -> bool:
    if not isinstance(node, ast.Assign | ast.AnnAssign):
        return False
    value = node.value
    try:
        ast.literal_eval(value)
    except ValueError:
        return False
    return True


def check_notebook(path: Path) -> list[str]:
    """Problems of one notebook, as sentences naming the notebook (empty when it is fine)."""
    try:
        nb = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return [f"{path}: not valid notebook JSON ({err})"]
    problems = []
    cells = nb.get("cells", [])
    code = [c for c in cells if c.get("cell_type") == "code"]
    if not cells or cells[0].get("cell_type") != "markdown" or not TITLE.match(
            "".join(cells[0].get("source", ""))):
        problems.append(f"{path}: first cell must be a markdown title '# NN · Title'")
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"{path}: {len(tagged)} cells tagged 'parameters' (exactly one needed)")
    else:
        src = "".join(tagged[0].get("source", ""))
        try:
            tree = ast.parse(src)
        except SyntaxError as err:
            problems.append(f"{path}: parameters cell does not parse ({err})")
        else:
            bad = [n.lineno for n in tree.body if not _is_literal_assignment(n)]
            if bad:
                problems.append(f"{path}: parameters cell line(s) {bad} are not literal "
                                "assignments; derive values in the next cell")
    if any(c.get("outputs") or c.get("execution_count") for c in code):
        problems.append(f"{path}: stored with outputs (run `make format` to strip them)")
    if code and ".record(" not in "".join(code[-1].get("source", "")):
        problems.append(f"{path}: last code cell must record results (outputs.record(...))")
    return problems


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts in place; True if the file changed."""
    text = path.read_text()
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
        cell.get("metadata", {}).pop("papermill", None)
    nb.get("metadata", {}).pop("papermill", None)
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != text:
        path.write_text(new)
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--strip", action="store_true", help="strip outputs before checking")
    args = parser.parse_args(argv)
    notebooks = sorted(args.folder.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        print(f"no notebooks in {args.folder}", file=sys.stderr)
        return 1
    problems = []
    for path in notebooks:
        if args.strip and strip_outputs(path):
            print(f"stripped {path}")
        problems += check_notebook(path)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(notebooks)} notebooks checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
