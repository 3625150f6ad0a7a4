"""Subcommands on data: ``demo-data``, ``demo-dicom``, ``cases``, ``convert``, ``export``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import nifti_output


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from ..demo import make_demo_dataset

    table = make_demo_dataset(args.out_dir, n_cases=args.cases, seed=args.seed, size=args.size,
                              overwrite=args.overwrite, workers=args.workers)
    print(f"wrote {len(table)} synthetic cases to {args.out_dir} (seed {args.seed}, "
          f"{args.size} px); they are synthetic, not patient data")
    return 0

def add_demo_data(sub) -> None:
    p = sub.add_parser(
        "demo-data", help="write synthetic LiTS-like CT cases (Kaggle layout)",
        description="Write synthetic abdominal CT volumes with liver/tumor masks in the Kaggle "
                    "LiTS layout: DIR/volume_ptK/volume-N.nii and "
                    "DIR/segmentations/segmentation-N.nii. Existing cases are kept.")
    p.add_argument("out_dir", type=Path, metavar="DIR")
    p.add_argument("--cases", type=int, default=8, help="number of cases (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=512, help="in-plane matrix, pixels (default 512)")
    p.add_argument("--overwrite", action="store_true", help="rewrite cases that already exist")
    p.add_argument("--workers", type=int, default=None,
                   help="processes generating cases side by side (default: all CPUs; the "
                        "files are the same for any number)")
    p.set_defaults(func=_cmd_demo_data)

def _cmd_demo_dicom(args: argparse.Namespace) -> int:
    from ..demo.dicom_series import write_demo_series

    paths = write_demo_series(args.volume, args.out_dir, shuffle=args.shuffle)
    print(f"wrote {len(paths)} DICOM files to {args.out_dir} (a synthetic CT series, not "
          "patient data)")
    return 0

def add_demo_dicom(sub) -> None:
    p = sub.add_parser(
        "demo-dicom", help="write a (synthetic) NIfTI CT as a DICOM series, to try the DICOM "
                           "commands",
        description="Write VOLUME (for example a demo case) as a DICOM CT series in OUT_DIR, "
                    "one file per axial slice, with the file's world coordinates. The patient "
                    "is made up; no patient data.")
    p.add_argument("volume", type=Path, metavar="VOLUME.nii[.gz]")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--shuffle", action="store_true",
                   help="file names and instance numbers in random order (readers must order "
                        "slices by position)")
    p.set_defaults(func=_cmd_demo_dicom)

def _cmd_cases(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..data.cases import find_cases, summarize_cases

    table = find_cases(args.data_dir)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
    shown = table.drop(columns=["volume_path", "mask_path"]) if not args.paths else table
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.max_colwidth", 90):
        print(shown.to_string(index=False))
    print(summarize_cases(table))
    if args.csv:
        print(f"table written to {args.csv}")
    return 0

def add_cases(sub) -> None:
    p = sub.add_parser(
        "cases", help="list the cases of a LiTS folder and check their headers",
        description="Pair volume-N.nii with segmentation-N.nii anywhere under DATA_DIR and "
                    "check headers: readable, 3-D, mask on the volume's grid. Prints one row "
                    "per case with status ok / bad / unpaired and the reason.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("--csv", type=Path, metavar="OUT.csv", help="also write the table as CSV")
    p.add_argument("--paths", action="store_true", help="show file paths in the printed table")
    p.set_defaults(func=_cmd_cases)

def _cmd_convert(args: argparse.Namespace) -> int:
    from ..data.dicom import DicomVolume

    nifti_output(args.out)
    volume = DicomVolume(args.dicom_dir, args.series)
    volume.to_nifti(args.out)
    g = volume.geometry
    print(f"{args.out}: {len(volume.series.paths)} slices of series {volume.series.uid}, "
          f"canonical shape {g.canonical_shape}, spacing "
          f"{' x '.join(f'{v:.3f}' for v in g.spacing)} mm, stored axes {''.join(g.axcodes)}")
    return 0

def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert", help="a DICOM CT series as a NIfTI file with the right affine",
        description="Read the CT series in DICOM_DIR (any depth; slices ordered by position, "
                    "Hounsfield units from the rescale tags, spacing from the positions) and "
                    "write it as a NIfTI file, for example volume-N.nii of a LiTS-layout "
                    "folder. Refused with the reason: several series without --series, non-CT, "
                    "missing slices, uneven spacing, gantry tilt, unreadable files.")
    p.add_argument("dicom_dir", type=Path, metavar="DICOM_DIR")
    p.add_argument("out", type=Path, metavar="OUT.nii.gz")
    p.add_argument("--series", metavar="UID", help="the SeriesInstanceUID to convert")
    p.set_defaults(func=_cmd_convert)

def _cmd_export(args: argparse.Namespace) -> int:
    from ..export import ExportSettings, export_slices, merge_export, parse_shard

    if args.merge is not None:
        if args.data_dir is not None or args.shard is not None:
            print("error: --merge OUT_DIR takes no other folder and no --shard", file=sys.stderr)
            return 2
        result = merge_export(args.merge)
        print(result.summary_text())
        return 0
    try:
        if args.data_dir is None or args.out_dir is None:
            raise ValueError("DATA_DIR and OUT_DIR are needed (or --merge OUT_DIR)")
        ExportSettings(args.every, args.size, args.windows, args.test_fraction, args.seed,
                       roi=args.roi, roi_margin_mm=args.roi_margin_mm, context=args.context)
        if args.workers is not None and args.workers < 0:
            raise ValueError(f"--workers must be positive (0: all CPUs), got {args.workers}")
        if args.shard is not None:
            parse_shard(args.shard)
            if args.overwrite:
                raise ValueError("--overwrite cannot be combined with --shard")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = export_slices(args.data_dir, args.out_dir, every=args.every, size=args.size,
                           windows=args.windows, test_fraction=args.test_fraction,
                           seed=args.seed, workers=args.workers or None,
                           progress=not args.quiet, overwrite=args.overwrite, shard=args.shard,
                           roi=args.roi, roi_margin_mm=args.roi_margin_mm,
                           context=args.context)
    print(result.summary_text())
    if not result.complete:
        print(f"error: {len(result.failed)} usable cases failed while being exported; "
              "run the same command again to retry them", file=sys.stderr)
        return 1
    return 0

def add_export(sub) -> None:
    from ..data.windowing import WINDOWS

    p = sub.add_parser(
        "export", help="export 2-D slices (JPEG images, PNG masks) with a patient-level split",
        description="Export every k-th axial slice of the cases under DATA_DIR to OUT_DIR: "
                    "{train,test}/images/*.jpg (the windows plus the histogram-equalised "
                    "channel), {train,test}/masks/*.png (labels 0/1/2), manifest.csv, "
                    "cases.csv and preprocessing.json. Patients are split into train and "
                    "test (stratified by tumor presence); the histogram breaks come from the "
                    "training patients only. Bad cases are listed with the reason and "
                    "skipped. Run the same command again to finish an interrupted export. "
                    "With --shard I/N, N machines export disjoint parts into one folder. "
                    "Exit status: 0 when every usable case was exported, 1 when some failed, "
                    "2 when none could be (or on bad arguments).")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR", nargs="?")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR", nargs="?")
    p.add_argument("--every", type=int, default=2, help="export every k-th slice (default 2)")
    p.add_argument("--size", type=int, default=256,
                   help="side of the square output images in pixels (default 256; 0: original)")
    p.add_argument("--windows", default="liver,abdomen_soft",
                   help="two comma-separated window names, the red and green channels "
                        f"(default liver,abdomen_soft; known: {', '.join(WINDOWS)})")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of the patients held out for testing (default 0.2)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes, one case each (default: all CPUs); the output is the same "
                        "for any number, memory grows with it")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an export already in OUT_DIR instead of resuming it (only "
                        "the files an export writes are deleted)")
    p.add_argument("--shard", metavar="I/N",
                   help="export only shard I of N (0 <= I < N) of the cases (shares balanced "
                        "by voxels); N machines run the same command with I = 0 .. N-1 "
                        "into one shared OUT_DIR, and the last to finish writes manifest.csv")
    p.add_argument("--merge", type=Path, metavar="OUT_DIR",
                   help="only write manifest.csv, cases.csv and preprocessing.json of a sharded "
                        "export whose shards have all finished")
    p.add_argument("--roi", action="store_true",
                   help="export crops of each case's liver box instead of whole slices (the "
                        "training data of a cascade's tumor model); the same patient split")
    p.add_argument("--roi-margin-mm", type=float, default=10.0, metavar="MM",
                   help="margin of the liver box around the liver (default 10 mm)")
    p.add_argument("--context", type=int, default=0, metavar="K",
                   help="add the liver window of K slices below and K above as channels "
                        "(2.5-D input; default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_export)
