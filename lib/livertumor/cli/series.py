"""The ``run`` subcommand: the notebook series, headless."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LiverTumorError


def _cmd_run(args: argparse.Namespace) -> int:
    from ..series.runner import describe_run, run_series

    only = [o.strip() for o in args.only.split(",")] if args.only else None
    def absolute(path):
        return None if path is None else path.resolve()

    run_dir = run_series(args.profile, data_dir=absolute(args.data_dir), run_name=args.run,
                         only=only, outputs_dir=absolute(args.outputs_dir),
                         export_dir=absolute(args.export_dir),
                         project_dir=absolute(args.project_dir), seed=args.seed,
                         study=absolute(args.study), overrides=dict(args.overrides or ()))
    print(describe_run(run_dir))
    return 0

def add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="run the notebook series headless (papermill)",
        description="Execute the notebooks of a profile (notebooks/params/PROFILE.yaml) in "
                    "order; executed notebooks, figures, results and run.json go to "
                    "outputs/RUN/.")
    p.add_argument("--profile", default="demo", help="smoke, demo (default) or full")
    p.add_argument("--data-dir", type=Path, help="a LiTS folder instead of the profile's data")
    p.add_argument("--run", help="run folder name under outputs/ (default: the profile name)")
    p.add_argument("--only", help="comma-separated notebooks to run, e.g. 01,02")
    p.add_argument("--outputs-dir", type=Path, default=Path("outputs"),
                   help="parent folder of the run folders (default: outputs)")
    p.add_argument("--export-dir", type=Path,
                   help="where to export the slices (default: the profile's export_dir)")
    p.add_argument("--study", type=Path, metavar="PATH",
                   help="a new patient's CT for the report without a reference: a DICOM series "
                        "folder or a NIfTI file (default: the demo's synthetic DICOM study)")
    p.add_argument("--project-dir", type=Path,
                   help="the folder holding notebooks/ (default: found from the working "
                        "directory upwards)")
    p.add_argument("--seed", type=int,
                   help="replace the profile's seed (patient split, training); the demo cases "
                        "stay the same")
    p.add_argument("--set", dest="overrides", action="append", type=_assignment,
                   metavar="KEY=VALUE",
                   help="replace a notebook parameter (repeatable): KEY in every notebook "
                        "that declares it (image_size=64), NAME.KEY in one notebook of the "
                        "profile (04_training_unet.epochs=1); VALUE is YAML (64, 0.5, true, "
                        "unet, [a, b]). Unknown parameters are refused before anything runs")
    p.set_defaults(func=_cmd_run)

def _assignment(text: str) -> tuple[str, object]:
    """``--set KEY=VALUE`` as ``(key, value)``; a malformed one is a usage error."""
    from ..series.overrides import parse_assignment

    try:
        return parse_assignment(text)
    except LiverTumorError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
