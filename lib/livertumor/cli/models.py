"""Subcommands on models: ``train``, ``score``, ``segment``, ``cascade``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import LiverTumorError
from .common import add_dataclass_options, nifti_output


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, train

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

def add_train(sub) -> None:
    from ..training import TrainConfig

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
    add_dataclass_options(p, TrainConfig)
    p.set_defaults(func=_cmd_train)

def _cmd_score(args: argparse.Namespace) -> int:
    import json
    import math

    from ..evaluation import score_files

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

def add_score(sub) -> None:
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

def _cmd_segment(args: argparse.Namespace) -> int:
    from ..inference import segment

    nifti_output(args.out)
    rules = _tumor_rules(args, largest_liver=args.postprocess)
    given = (args.min_tumor_ml, args.max_tumor_elongation, args.min_tumor_confidence,
             args.min_tumor_in_liver)
    if not args.postprocess and all(v is None for v in given):
        rules = None  # a cascade's own rules
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

def add_segment(sub) -> None:
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
    _add_tumor_rule_options(p, defaults=None)
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average over zooms of 0.9, 1 and 1.1 "
                        "(three times the work)")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=_cmd_segment)

def _add_tumor_rule_options(p: argparse.ArgumentParser, defaults: dict | None) -> None:
    """The tumor rules' options (:class:`~livertumor.inference.PostProcessing`), shared by
    ``segment`` and ``cascade``. ``defaults``: the value of ``min_tumor_ml``,
    ``max_tumor_elongation``, ``min_tumor_confidence`` and ``min_tumor_in_liver`` when not
    given, or None: not given means the model's own rule (a cascade's ``cascade.json``)."""
    def default(key):
        if defaults is None:
            return None, "default: none; a cascade's own rule"
        value = defaults[key]
        return value, f"default {value:g}" + (": off" if value == 0 else "")

    value, said = default("min_tumor_ml")
    p.add_argument("--min-tumor-ml", type=float, default=value, metavar="ML",
                   help=f"turn tumor components smaller than ML millilitres into liver ({said})")
    value, said = default("max_tumor_elongation")
    p.add_argument("--max-tumor-elongation", type=float, default=value, metavar="X",
                   help="turn tumor components more than X times as long as wide (principal "
                        f"axes, in mm) into liver: vessels, not tumors ({said})")
    p.add_argument("--elongation-below-ml", type=float, default=0.0, metavar="ML",
                   help="apply --max-tumor-elongation only to tumor components smaller than "
                        "ML millilitres (default 0: to all)")
    value, said = default("min_tumor_confidence")
    p.add_argument("--min-tumor-confidence", type=float, default=value, metavar="P",
                   help="turn tumor components whose mean tumor probability (of the tumor "
                        f"model) is below P into liver ({said})")
    value, said = default("min_tumor_in_liver")
    p.add_argument("--min-tumor-in-liver", type=float, default=value, metavar="S",
                   help="a cascade: tumor components with less than the share S of their "
                        "voxels in the liver model's liver are not liver tumors (they take the "
                        f"liver model's label; 0.5: at least half inside) ({said})")


def _tumor_rules(args: argparse.Namespace, largest_liver: bool):
    """:class:`~livertumor.inference.PostProcessing` from the options of
    :func:`_add_tumor_rule_options` (an option not given: that rule off)."""
    from ..inference import PostProcessing

    _check_elongation_args(args)
    return PostProcessing(largest_liver=largest_liver, min_tumor_ml=args.min_tumor_ml or 0.0,
                          max_tumor_elongation=args.max_tumor_elongation or 0.0,
                          elongation_below_ml=args.elongation_below_ml,
                          min_tumor_confidence=args.min_tumor_confidence or 0.0,
                          min_tumor_in_liver=args.min_tumor_in_liver or 0.0)


def _check_elongation_args(args: argparse.Namespace) -> None:
    """``--elongation-below-ml`` bounds the elongation rule: refuse it without one."""
    if args.elongation_below_ml and not args.max_tumor_elongation:
        raise LiverTumorError("--elongation-below-ml applies the elongation limit to small "
                              "tumors only: give the limit too (--max-tumor-elongation X)")


def _cmd_cascade(args: argparse.Namespace) -> int:
    from ..inference import Cascade, SingleStage, write_cascade

    rules = _tumor_rules(args, largest_liver=args.largest_liver)
    # both folders load and the tumor model was trained on crops, before anything is written
    Cascade(SingleStage(args.liver_model), SingleStage(args.tumor_model), rules,
            liver_in_box=args.liver_in_box)
    path = write_cascade(args.out, args.liver_model, args.tumor_model, rules, args.liver_in_box)
    print(f"cascade written to {path}; segment with: python -m livertumor segment "
          f"{path.parent} VOLUME.nii.gz OUT.nii.gz")
    return 0

def add_cascade(sub) -> None:
    from ..inference.cascade import LIVER_IN_BOX

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
    _add_tumor_rule_options(p, defaults={"min_tumor_ml": 0.05, "max_tumor_elongation": 0.0,
                                         "min_tumor_confidence": 0.0,
                                         "min_tumor_in_liver": 0.0})
    p.add_argument("--liver-in-box", choices=LIVER_IN_BOX, default="mean",
                   help="the liver inside the liver box: the mean of both models' liver "
                        "probabilities (mean, default: the tumor model also labels the liver, "
                        "at a higher resolution) or the liver model's alone (first)")
    p.set_defaults(func=_cmd_cascade)
