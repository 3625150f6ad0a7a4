"""What each part of the cascade costs and gains, on the demo's test patients.

Takes a finished demo run (``make run``: its data, its whole-slice U-Net as the liver stage
and its export settings) and measures, with the tumor stage trained the same way each time:

- **slice context**: the tumor stage on liver crops with 0 and with 1 neighbouring slice per
  side (export seconds, training seconds, model inputs, and the scores); the run's own tumor
  stage is the one with its context, only the other is trained here;
- **test-time augmentation**: the cascade with and without ``tta`` (seconds and scores);
- **post-processing**: the cascade without rules, with the largest liver only, and with the
  minimum tumor volume only (with both, it is the context row of the first table);
- **the tumor stage's crop size, upsampling and training length** (``--parts stage``): one
  tumor stage per ``SIZE:UPSAMPLING:STEPS`` variant (``--variants``), without context, each
  with the run's liver stage and tumors from 0.05 mL;
- **the tumor stage's training settings** (``--parts settings``): one tumor stage per
  ``--settings`` variant, a space-separated list of ``KEY=VALUE`` overrides of its
  ``TrainConfig`` (``roi_size=N`` exports the liver crops at N pixels, with the run's context),
  each in the run's cascade with the run's own post-processing (its ``cascade.json``); the empty
  variant is the run's own tumor stage;
- **which tumors the tumor stage finds, by size** (``--parts sizes``): on the liver crops of
  training and test patients, each 2-D tumor component (a lesion's cross-section in one crop)
  by its area in crop pixels: how many, the median of the model's highest tumor probability
  inside it, and the share of them whose pixels are at least 30 % labelled tumor.

    python benchmarks/cascade_ablation.py                # on outputs/demo (about 15 minutes)
    python benchmarks/cascade_ablation.py --run demo-seed1
    python benchmarks/cascade_ablation.py --parts tta       # only test-time augmentation
    python benchmarks/cascade_ablation.py --parts stage     # crop size, upsampling, steps
                                                            # (about 50 minutes)
    python benchmarks/cascade_ablation.py --parts settings  # training settings (about 30 min)
    python benchmarks/cascade_ablation.py --parts sizes     # found by size (about 1 minute)

Synthetic data: the numbers say what the parts change in this pipeline, not how it would do on
patients. Nothing here is asserted; the figures are printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
KEYS = [("liver_dice_mean", "liver Dice"), ("tumor_dice_global", "tumor Dice global"),
        ("tumor_dice_mean", "tumor Dice/case"), ("lesion_recall_ge10mm", "recall >=10mm"),
        ("lesion_recall", "recall"), ("lesion_precision", "precision"),
        ("tumor_auc", "tumor AUC")]


def _row(name: str, summary: dict, seconds: float) -> str:
    cells = [f"{summary.get(k) if summary.get(k) is not None else float('nan'):.3f}"
             for k, _ in KEYS]
    return f"| {name} | " + " | ".join(cells) + f" | {seconds:.0f} |"


def _header(what: str) -> str:
    return (f"| {what} | " + " | ".join(label for _, label in KEYS) + " | seconds |\n"
            + "|---" * (len(KEYS) + 2) + "|")


def _export_train_score(args, record, prep, cases, liver, rules, name: str, *, size: int,
                        context: int, every: int, config=None, model_dir: Path | None = None):
    """One tumor stage in the run's cascade: the liver crops at ``size`` px with ``context``
    neighbouring slices per side, every ``every``-th slice (exported into ``args.out``; an
    export already there is reused), a tumor stage trained on them with ``config`` into
    ``args.out / "tumor-<name>"`` (or the finished ``model_dir``, not trained again), and the
    cascade of the run's liver stage, that tumor stage and ``rules`` evaluated on ``cases``.

    Returns (export seconds, training seconds (0 when not trained), evaluation seconds, the
    evaluation's summary dict).
    """
    from livertumor.evaluation import evaluate
    from livertumor.export import export_slices
    from livertumor.inference import Cascade, SingleStage
    from livertumor.training import train

    t0 = time.perf_counter()
    roi = export_slices(record["data_dir"], args.out / f"roi-s{size}-c{context}", every=every,
                        size=size, windows=prep["windows"], test_fraction=prep["test_fraction"],
                        seed=prep["seed"], progress=False, roi=True, context=context)
    t_export = time.perf_counter() - t0
    t_train = 0.0
    if model_dir is None:
        model_dir = args.out / f"tumor-{name}"
        t0 = time.perf_counter()
        train(roi.out_dir, model_dir, config, verbose=0)
        t_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate(Cascade(liver, SingleStage(model_dir), rules), cases,
                      args.out / f"eval-{name}", progress=False)
    return t_export, t_train, time.perf_counter() - t0, result.summary


STAGE_VARIANTS = ["128:transpose:90", "128:bilinear:90", "160:bilinear:90", "160:transpose:90",
                  "128:transpose:270"]


def _stage_variants(args, record, prep, cases, liver, tumor_run) -> None:
    """One tumor stage per SIZE:UPSAMPLING:STEPS, without context, in the run's cascade."""
    from livertumor.inference import PostProcessing
    from livertumor.training import TrainConfig

    print("\n" + _header("tumor stage (context 0): size, upsampling, steps per epoch"))
    for variant in args.variants:
        size, upsampling, steps = variant.split(":")
        config = TrainConfig.from_dict({**tumor_run, "image_size": int(size),
                                        "upsampling": upsampling,
                                        "steps_per_epoch": int(steps)})
        t_export, t_train, t_eval, summary = _export_train_score(
            args, record, prep, cases, liver, PostProcessing(largest_liver=True,
                                                             min_tumor_ml=0.05),
            f"s{size}-{upsampling}-{steps}", size=int(size), context=0, every=2, config=config)
        name = (f"{size} px, {upsampling}, {config.epochs} x {steps}; export {t_export:.0f} s, "
                f"training {t_train:.0f} s, evaluation")
        print(_row(name, summary, t_eval), flush=True)


SETTINGS_VARIANTS = ["", "tumor_weight=3", "learning_rate=0.003", "base_filters=32",
                     "roi_size=256 image_size=256 patch_size=128"]


def _settings_variants(args, record, prep, cases, liver, run) -> None:
    """One tumor stage per ``--settings`` variant, in the run's cascade and rules."""
    from livertumor.inference import PostProcessing
    from livertumor.training import TrainConfig

    tumor_run = record["notebooks"]["04_training_tumor_unet"]["parameters"]
    export_params = record["notebooks"]["03_slice_export"]["parameters"]
    rules = PostProcessing(**json.loads(
        (run / "models" / "cascade" / "cascade.json").read_text())["postprocess"])
    print(f"\ntumor stage settings (rules: {rules.as_dict()}; after each row: lesions found "
          f"of the reference lesions)\n{_header('tumor stage settings')}")
    for variant in args.settings:
        overrides = dict(item.split("=", 1) for item in variant.split())
        roi_size = int(overrides.pop("roi_size", export_params.get("roi_size", 128)))
        values = {k: yaml.safe_load(v) for k, v in overrides.items()}  # as run --set
        _, t_train, t_eval, summary = _export_train_score(
            args, record, prep, cases, liver, rules,
            variant.replace(" ", "-").replace("=", "") or "own", size=roi_size,
            context=export_params.get("context", 0), every=export_params.get("roi_every", 2),
            config=TrainConfig.from_dict({**tumor_run, **values}),
            model_dir=None if variant else run / "models" / "tumor_unet")
        found = int(summary["lesion_tp"])
        total = found + int(summary["lesion_fn"])
        name = variant or "the run's own tumor stage"
        print(_row(f"{name}; training {t_train:.0f} s, evaluation", summary, t_eval)
              + f" {found} of {total}", flush=True)


AREA_BINS = (0, 10, 20, 40, 80, 160, 400, 1 << 20)


def _found_by_size(run, record) -> None:
    """The run's tumor stage on its liver crops: 2-D tumor components by area."""
    import numpy as np
    import pandas as pd
    from scipy import ndimage

    from livertumor.training import load_model
    from livertumor.training.dataset import load_manifest, make_dataset

    model_dir = run / "models" / "tumor_unet"
    model = load_model(model_dir / "model.keras", compile=False)
    side = json.loads((model_dir / "config.json").read_text())["config"]["image_size"]
    manifest = load_manifest(Path(record["export_dir"] + "-roi"))
    print("\ntumor stage on its liver crops: 2-D tumor components by area (crop pixels)")
    for split in ("train", "test"):
        rows = manifest[(manifest["split"] == split) & (manifest["tumor_pixels"] > 0)]
        found = []
        for images, masks in make_dataset(rows, 32, side):
            p = model.predict(images, verbose=0)
            labels, probs = np.argmax(p, axis=-1), p[..., 2]
            for mask, label, prob in zip(masks.numpy(), labels, probs, strict=True):
                components, n = ndimage.label(mask == 2)
                for i in range(1, n + 1):
                    inside = components == i
                    found.append({"area": int(inside.sum()), "p_max": float(prob[inside].max()),
                                  "hit": float((label[inside] == 2).mean()) >= 0.3})
        table = pd.DataFrame(found)
        table["area"] = pd.cut(table["area"], AREA_BINS, right=False)
        print(f"{split} ({len(rows)} crops with tumor)")
        print(table.groupby("area", observed=True).agg(
            components=("hit", "size"), median_p_max=("p_max", "median"),
            found=("hit", "mean")).round(2).to_string())


def main() -> None:
    from livertumor.evaluation import evaluate, load_test_cases
    from livertumor.export import load_export
    from livertumor.inference import Cascade, PostProcessing, SingleStage
    from livertumor.training import TrainConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="demo", help="run folder under outputs/ (default demo)")
    parser.add_argument("--out", type=Path, default=PROJECT / "outputs" / "cascade-ablation")
    parser.add_argument("--parts", nargs="+",
                        choices=["context", "tta", "rules", "stage", "settings", "sizes"],
                        default=["context", "tta", "rules"],
                        help="what to measure (default: context, tta, rules)")
    parser.add_argument("--variants", nargs="+", default=STAGE_VARIANTS, metavar="S:UP:N",
                        help="--parts stage: crop size, upsampling (transpose or bilinear) and "
                             "steps per epoch of each tumor stage")
    parser.add_argument("--settings", nargs="+", default=SETTINGS_VARIANTS, metavar="'K=V ...'",
                        help="--parts settings: TrainConfig overrides of each tumor stage ('' is "
                             "the run's own; roi_size=N exports the crops at N pixels)")
    args = parser.parse_args()
    run = PROJECT / "outputs" / args.run
    record = json.loads((run / "run.json").read_text())
    tumor_run = record["notebooks"]["04_training_tumor_unet"]["parameters"]
    export_params = record["notebooks"]["03_slice_export"]["parameters"]
    whole = load_export(record["export_dir"])
    prep = whole.preprocessing
    cases = load_test_cases(whole.out_dir)
    liver = SingleStage(run / "models" / "unet")
    config = TrainConfig.from_dict(tumor_run)
    args.out.mkdir(parents=True, exist_ok=True)

    if "sizes" in args.parts:
        _found_by_size(run, record)
    if "settings" in args.parts:
        _settings_variants(args, record, prep, cases, liver, run)
    if "stage" in args.parts:
        _stage_variants(args, record, prep, cases, liver, tumor_run)
    if not {"context", "tta", "rules"} & set(args.parts):
        return
    own_context = export_params.get("context", 0)
    own_seconds = record["notebooks"]["04_training_tumor_unet"]["seconds"]
    print(f"test patients: {len(cases)}; tumor stage: {config}\n"
          f"(context {own_context}: the run's own tumor stage; its training seconds are those "
          "of its notebook)\n")
    print(_header("tumor stage input"))
    for context in (0, 1) if "context" in args.parts else ():
        own = run / "models" / "tumor_unet" if context == own_context else None
        t_export, t_train, t_eval, summary = _export_train_score(
            args, record, prep, cases, liver, PostProcessing(largest_liver=True,
                                                             min_tumor_ml=0.05),
            f"context{context}", size=export_params.get("roi_size", 128), context=context,
            every=export_params.get("roi_every", 2), config=config, model_dir=own)
        t_train = own_seconds if own else t_train  # the run's own: its notebook's seconds
        print(_row(f"{3 + 2 * context} channels (context {context}); export {t_export:.0f} s, "
                   f"training {t_train:.0f} s, evaluation", summary, t_eval), flush=True)

    best = SingleStage(run / "models" / "tumor_unet" if own_context == 1
                       else args.out / "tumor-context1")
    print("\n" + _header("cascade (context 1) with"))
    for name, tta in (("no TTA", False), ("TTA (zooms 0.9, 1, 1.1)", True)):
        if "tta" not in args.parts or (not tta and "context" in args.parts):
            continue  # without TTA: the context row above
        stage = SingleStage(best.model_dir, tta=tta)
        cascade = Cascade(SingleStage(liver.model_dir, tta=tta), stage,
                          PostProcessing(largest_liver=True, min_tumor_ml=0.05))
        t0 = time.perf_counter()
        result = evaluate(cascade, cases, args.out / f"eval-tta{int(tta)}", progress=False)
        print(_row(name, result.summary, time.perf_counter() - t0), flush=True)

    if "rules" not in args.parts:
        return
    print("\n" + _header("post-processing of the cascade (both rules: the first table)"))
    for name, rules in (("none", PostProcessing()),
                        ("largest liver", PostProcessing(largest_liver=True)),
                        ("tumors >= 0.05 mL", PostProcessing(min_tumor_ml=0.05))):
        cascade = Cascade(liver, best, rules)
        t0 = time.perf_counter()
        result = evaluate(cascade, cases, args.out / f"eval-rules-{name.split()[0]}",
                          progress=False)
        print(_row(name, result.summary, time.perf_counter() - t0), flush=True)


if __name__ == "__main__":
    main()
