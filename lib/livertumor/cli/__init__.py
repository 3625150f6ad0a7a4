"""Command line: ``python -m livertumor <command> ...``, one subcommand per pipeline stage.

Each subcommand parses and validates its arguments, makes one library call and prints a short
result. Errors on bad input print one line naming the file and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import LiverTumorError
from .data import add_cases, add_convert, add_demo_data, add_demo_dicom, add_export
from .models import add_cascade, add_score, add_segment, add_train
from .series import add_run

SUBCOMMANDS = (add_demo_data, add_demo_dicom, add_cases, add_convert, add_export, add_run,
               add_train, add_score, add_segment, add_cascade)
"""The subcommands in the order ``--help`` lists them; each adds its parser."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m livertumor`` parser: one subcommand per pipeline stage."""
    parser = argparse.ArgumentParser(
        prog="python -m livertumor",
        description="Liver and liver-tumor segmentation in CT (LiTS layout).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LiverTumorError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
