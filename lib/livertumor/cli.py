"""Command line: ``python -m livertumor <command> ...``, one subcommand per pipeline stage.

Each subcommand parses and validates its arguments, makes one library call and prints a short
result. Errors on bad input print one line naming the file and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import LiverTumorError


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from .demo import make_demo_dataset

    table = make_demo_dataset(args.out_dir, n_cases=args.cases, seed=args.seed, size=args.size,
                              overwrite=args.overwrite, workers=args.workers)
    print(f"wrote {len(table)} synthetic cases to {args.out_dir} (seed {args.seed}, "
          f"{args.size} px); they are synthetic, not patient data")
    return 0


def _cmd_cases(args: argparse.Namespace) -> int:
    import pandas as pd

    from .data.cases import find_cases, summarize_cases

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


def _cmd_run(args: argparse.Namespace) -> int:
    from .series.runner import describe_run, run_series

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


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig, train

    try:
        config = TrainConfig.from_dict(vars(args))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    result = train(args.export_dir, args.model_dir, config, verbose=2)
    if result.get("already_trained"):
        print(f"{args.model_dir} already holds a finished run with these settings")
        return 0
    best = result["best"]
    print(f"trained {config.architecture} for {result['epochs_run']} epochs; best epoch "
          f"{result['best_epoch']}: val_loss {best.get('val_loss', float('nan')):.4f}, "
          f"val liver Dice {best.get('val_liver_dice', float('nan')):.3f}, "
          f"val tumor Dice {best.get('val_tumor_dice', float('nan')):.3f}")
    print(f"model, history and config in {args.model_dir}; "
          f"TensorBoard logs: {result['tensorboard_logs']}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import json
    import math

    from .evaluation import score_files

    scores = score_files(args.pred, args.truth, connectivity=args.connectivity)
    if args.json:
        print(json.dumps(scores, indent=2, default=lambda v: None if v != v else v))
        return 0
    spacing = ", ".join(f"{v:.3g}" for v in scores["spacing_mm"])
    print(f"{args.pred} against {args.truth} (spacing {spacing} mm, "
          f"surface connectivity {args.connectivity})")
    print(f"{'':8}{'Dice':>8}{'IoU':>8}{'VOE':>8}{'RVD':>8}{'ASSD':>9}{'HD95':>9}{'MSD':>9}"
          f"{'pred mL':>10}{'ref mL':>10}")
    for s in ("liver", "tumor"):
        row = [scores[f"{s}_{m}"] for m in ("dice", "iou", "voe", "rvd")]
        dist = [scores[f"{s}_{m}"] for m in ("assd", "hd95", "msd")]
        vols = [scores[f"{s}_pred_ml"], scores[f"{s}_ref_ml"]]
        print(f"{s:8}" + "".join(f"{v:8.3f}" for v in row)
              + "".join(f"{v:9.2f}" if not math.isnan(v) else f"{'n/a':>9}" for v in dist)
              + "".join(f"{v:10.1f}" for v in vols))
    print(f"lesions: {scores['lesion_tp']} found, {scores['lesion_fn']} missed, "
          f"{scores['lesion_fp']} false positive; distances in mm")
    if scores.get("truth_identity_affine"):
        print("warning: the reference has an identity affine; mm and mL values are unreliable")
    return 0


def _nifti_output(path: Path) -> None:
    if not path.name.endswith((".nii", ".nii.gz")):
        raise LiverTumorError("output must end in .nii or .nii.gz", path)


def _cmd_segment(args: argparse.Namespace) -> int:
    from .inference import PostProcessing, segment

    _nifti_output(args.out)
    rules = None
    if (args.postprocess or args.min_tumor_ml is not None
            or args.max_tumor_elongation is not None):
        rules = PostProcessing(largest_liver=args.postprocess,
                               min_tumor_ml=args.min_tumor_ml or 0.0,
                               max_tumor_elongation=args.max_tumor_elongation or 0.0)
    if args.dicom_seg is not None and args.dicom_seg.suffix.lower() != ".dcm":
        raise LiverTumorError("the DICOM-SEG output must end in .dcm", args.dicom_seg)
    out = segment(args.model_dir, args.volume, args.out, args.probabilities,
                  batch_size=args.batch_size, postprocess=rules, tta=args.tta,
                  series_uid=args.series, dicom_seg_path=args.dicom_seg)
    print(f"labels written to {out} (0 background, 1 liver, 2 tumor; on the input's grid)")
    if args.probabilities:
        print(f"liver and tumor probabilities written to {args.probabilities}")
    if args.dicom_seg:
        print(f"DICOM-SEG written to {args.dicom_seg} (segments 1 liver, 2 liver tumor; it "
              "references the input series)")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from .data.dicom import DicomVolume

    _nifti_output(args.out)
    volume = DicomVolume(args.dicom_dir, args.series)
    volume.to_nifti(args.out)
    g = volume.geometry
    print(f"{args.out}: {len(volume.series.paths)} slices of series {volume.series.uid}, "
          f"canonical shape {g.canonical_shape}, spacing "
          f"{' x '.join(f'{v:.3f}' for v in g.spacing)} mm, stored axes {''.join(g.axcodes)}")
    return 0


def _cmd_demo_dicom(args: argparse.Namespace) -> int:
    from .demo.dicom_series import write_demo_series

    paths = write_demo_series(args.volume, args.out_dir, shuffle=args.shuffle)
    print(f"wrote {len(paths)} DICOM files to {args.out_dir} (a synthetic CT series, not "
          "patient data)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import ExportSettings, export_slices, merge_export, parse_shard

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


def _add_demo_data(sub) -> None:
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


def _add_cases(sub) -> None:
    p = sub.add_parser(
        "cases", help="list the cases of a LiTS folder and check their headers",
        description="Pair volume-N.nii with segmentation-N.nii anywhere under DATA_DIR and "
                    "check headers: readable, 3-D, mask on the volume's grid. Prints one row "
                    "per case with status ok / bad / unpaired and the reason.")
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("--csv", type=Path, metavar="OUT.csv", help="also write the table as CSV")
    p.add_argument("--paths", action="store_true", help="show file paths in the printed table")
    p.set_defaults(func=_cmd_cases)


def _add_export(sub) -> None:
    from .data.windowing import WINDOWS

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


def _add_run(sub) -> None:
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
    from .series.overrides import parse_assignment

    try:
        return parse_assignment(text)
    except LiverTumorError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    """One option per field of a settings dataclass: ``--name-with-dashes``.

    Type and default come from the field, the help text from ``metadata["doc"]``, choices and
    metavar from ``metadata["choices"]`` and ``metadata["metavar"]``; a bool field becomes a
    ``--name`` / ``--no-name`` pair. The option's dest is the field name, so
    ``cls.from_dict(vars(args))`` builds the settings.
    """
    import dataclasses
    import typing

    types = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        meta = {"help": f.metadata.get("doc", "").replace("%", "%%"), "default": f.default}
        if types[f.name] is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **meta)
            continue
        for key in ("choices", "metavar"):
            if f.metadata.get(key) is not None:
                meta[key] = f.metadata[key]
        parser.add_argument(flag, type=types[f.name], **meta)


def _add_train(sub) -> None:
    from .training import TrainConfig

    p = sub.add_parser(
        "train", help="train a U-Net or ResNet-50 U-Net on an export folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train on the train split of EXPORT_DIR (some training cases held out for "
                    "validation) and write MODEL_DIR: model.keras, best/last checkpoints, "
                    "history.csv, config.json, preprocessing.json and, when the tensorboard "
                    "package is installed, TensorBoard logs. Run the same command again to "
                    "resume an interrupted run.")
    p.add_argument("export_dir", type=Path, metavar="EXPORT_DIR")
    p.add_argument("model_dir", type=Path, metavar="MODEL_DIR")
    _add_dataclass_options(p, TrainConfig)
    p.set_defaults(func=_cmd_train)


def _add_score(sub) -> None:
    p = sub.add_parser(
        "score", help="LiTS scores of a predicted segmentation against the reference",
        description="Dice, IoU, VOE, RVD, ASSD, HD95 and maximum surface distance (mm) for "
                    "liver (labels >= 1) and tumor (label 2), and lesion detection. The "
                    "prediction must be on the reference's voxel grid.")
    p.add_argument("pred", type=Path, metavar="PRED.nii[.gz]")
    p.add_argument("truth", type=Path, metavar="TRUTH.nii[.gz]")
    p.add_argument("--connectivity", type=int, choices=(1, 2), default=1,
                   help="surface erosion: 1 face (MedPy, MONAI; default), 2 the "
                        "18-neighbourhood of the official LiTS program")
    p.add_argument("--json", action="store_true", help="print all scores as JSON")
    p.set_defaults(func=_cmd_score)


def _add_segment(sub) -> None:
    p = sub.add_parser(
        "segment", help="segment a CT volume with a model or a cascade, output on its own grid",
        description="Predict liver and tumor on every axial slice of VOLUME with the model and "
                    "preprocessing of MODEL (a model folder written by train), or with a "
                    "cascade (a folder holding cascade.json, or that file: the liver model, "
                    "then the tumor model inside the liver's box), and write a uint8 label "
                    "map with the volume's shape, affine, qform and sform.")
    p.add_argument("model_dir", type=Path, metavar="MODEL")
    p.add_argument("volume", type=Path, metavar="VOLUME",
                   help="the CT: a .nii / .nii.gz file, or a folder (any depth) holding a "
                        "DICOM CT series")
    p.add_argument("out", type=Path, metavar="OUT.nii.gz")
    p.add_argument("--series", metavar="UID",
                   help="DICOM: the SeriesInstanceUID to read when the folder holds several "
                        "(without it, such a folder is refused with a list of its series)")
    p.add_argument("--dicom-seg", type=Path, metavar="OUT.dcm",
                   help="DICOM input: also write a DICOM-SEG object (segments liver and liver "
                        "tumor) that references the input series")
    p.add_argument("--probabilities", type=Path, metavar="OUT_P.nii.gz",
                   help="also write liver and tumor probabilities (4-D, uint8 scaled)")
    p.add_argument("--postprocess", action="store_true",
                   help="keep only the largest connected liver region (tumors inside it)")
    p.add_argument("--min-tumor-ml", type=float, metavar="ML",
                   help="turn tumor components smaller than ML millilitres into liver "
                        "(default: none; a cascade's own rule)")
    p.add_argument("--max-tumor-elongation", type=float, metavar="X",
                   help="turn tumor components more than X times as long as wide (principal "
                        "axes, in mm) into liver: vessels, not tumors (default: none; a "
                        "cascade's own rule)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over zooms of 0.9, 1 and 1.1 "
                        "(three times the work)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=_cmd_segment)


def _cmd_cascade(args: argparse.Namespace) -> int:
    from .inference import Cascade, PostProcessing, SingleStage, write_cascade

    rules = PostProcessing(largest_liver=args.largest_liver, min_tumor_ml=args.min_tumor_ml,
                           max_tumor_elongation=args.max_tumor_elongation)
    # both folders load and the tumor model was trained on crops, before anything is written
    Cascade(SingleStage(args.liver_model), SingleStage(args.tumor_model), rules)
    path = write_cascade(args.out, args.liver_model, args.tumor_model, rules)
    print(f"cascade written to {path}; segment with: python -m livertumor segment "
          f"{path.parent} VOLUME.nii.gz OUT.nii.gz")
    return 0


def _add_cascade(sub) -> None:
    p = sub.add_parser(
        "cascade", help="combine a liver model and a liver-box tumor model into a cascade",
        description="Write cascade.json into OUT (a folder, or a .json file) naming the two "
                    "model folders: LIVER_MODEL (trained on whole slices) finds the liver, "
                    "TUMOR_MODEL (trained on an export made with --roi) looks for tumors "
                    "inside the liver's box. Both are loaded once to check them.")
    p.add_argument("liver_model", type=Path, metavar="LIVER_MODEL")
    p.add_argument("tumor_model", type=Path, metavar="TUMOR_MODEL")
    p.add_argument("out", type=Path, metavar="OUT")
    p.add_argument("--largest-liver", action=argparse.BooleanOptionalAction, default=True,
                   help="keep only the largest connected liver region (default: yes)")
    p.add_argument("--min-tumor-ml", type=float, default=0.05, metavar="ML",
                   help="turn tumor components smaller than ML millilitres into liver "
                        "(default 0.05)")
    p.add_argument("--max-tumor-elongation", type=float, default=0.0, metavar="X",
                   help="turn tumor components more than X times as long as wide (principal "
                        "axes, in mm) into liver (default 0: off)")
    p.set_defaults(func=_cmd_cascade)


def _add_convert(sub) -> None:
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


def _add_demo_dicom(sub) -> None:
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


SUBCOMMANDS = (_add_demo_data, _add_demo_dicom, _add_cases, _add_convert, _add_export, _add_run,
               _add_train, _add_score, _add_segment, _add_cascade)
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
