"""Predictors: one model, or the two-stage cascade (liver first, then tumors inside the liver's
box at a higher resolution), behind one ``predict(volume)``.

A cascade is described by a ``cascade.json`` (:func:`write_cascade`) naming the two model
folders, relative to the file's own folder::

    {"format": 1, "liver": "../unet", "tumor": "../tumor_unet",
     "postprocess": {"largest_liver": true, "min_tumor_ml": 0.05}, "liver_in_box": "mean"}

Stage 1 (the liver model, a whole-slice model such as the report's U-Net) gives the liver; its
largest connected component defines the liver box (:func:`livertumor.data.roi.liver_box`, with
the margin the tumor model was exported with). Stage 2 (a model trained on a ROI export)
predicts inside that box only. The label map is the liver of stage 1 (inside the box, with
``liver_in_box: mean``, the mean of both stages' liver probabilities) holding the tumors of
stage 2 (:func:`.postprocess.liver_and_tumor`: a tumor the first stage left out of the liver
still counts), then the post-processing rules: with ``largest_liver``, only what is connected
to the liver stays, so tumors lie inside it; with ``min_tumor_in_liver``, a tumor the liver
stage puts mostly outside the liver is not one. Christ et al. 2016 (arXiv
1610.02177) and Bi et al. 2017 (arXiv 1704.02703) cascade 2-D networks the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import write_json
from ..data.roi import ROI_MARGIN_MM, liver_box
from ..data.volumes import NiftiVolume
from ..errors import LiverTumorError
from .postprocess import PostProcessing, largest_liver_component, liver_and_tumor, postprocess
from .predict import (
    Segmentation,
    liver_probability,
    load_preprocessing,
    predict_volume,
    rules_of,
)

CASCADE_FILE = "cascade.json"

LIVER_IN_BOX = ("first", "mean")
"""Where a cascade's liver comes from inside the liver box: ``first``, the liver stage alone;
``mean``, the mean of the two stages' liver probabilities (classes 1 and 2) above 0.5 (the
tumor stage also labels the liver, at a higher resolution; outside the box, the liver stage
alone). On the six validation and ten test patients of a demo run the mean scored liver Dice
0.965-0.980 per patient against 0.936-0.963 for the liver stage alone, and it never scored
below it; the tumor stage alone did better on most patients but scored below the liver stage
on two."""


@dataclass
class SingleStage:
    """One model folder (``model.keras`` + ``preprocessing.json``) as a predictor."""

    model_dir: Path
    rules: PostProcessing = field(default_factory=PostProcessing)
    batch_size: int = 16
    tta: bool = False

    def __post_init__(self):
        from ..training import load_model

        self.model_dir = Path(self.model_dir)
        self.prep = load_preprocessing(self.model_dir)
        path = self.model_dir / "model.keras"
        if not path.exists():
            raise LiverTumorError("no model.keras: not a finished model folder", self.model_dir)
        self.model = load_model(path, compile=False)

    def predict(self, volume: NiftiVolume, keep_probabilities: bool = False,
                progress: bool = True, keep_liver_probability: bool = False) -> Segmentation:
        return predict_volume(self.model, volume, self.prep, self.batch_size, keep_probabilities,
                              self.rules, progress, tta=self.tta,
                              keep_liver_probability=keep_liver_probability)

    def describe(self) -> dict:
        return {"kind": "single", "model_dir": str(self.model_dir),
                "postprocess": self.rules.as_dict(), "tta": self.tta}


@dataclass
class Cascade:
    """Liver model, then tumor model inside the liver's box (see the module docstring)."""

    liver: SingleStage
    tumor: SingleStage
    rules: PostProcessing = field(default_factory=PostProcessing)
    source: Path | None = None
    liver_in_box: str = "first"

    def __post_init__(self):
        if self.liver_in_box not in LIVER_IN_BOX:
            raise ValueError(f"liver_in_box must be one of {LIVER_IN_BOX}, got "
                             f"{self.liver_in_box!r}")
        roi = self.tumor.prep.get("roi")
        if not roi:
            raise LiverTumorError("the tumor stage was not trained on liver-box crops (its "
                                  "preprocessing.json has no 'roi'); export with --roi",
                                  self.tumor.model_dir)
        self.margin_mm = float(roi.get("margin_mm", ROI_MARGIN_MM))

    def predict(self, volume: NiftiVolume, keep_probabilities: bool = False,
                progress: bool = True, first: Segmentation | None = None) -> Segmentation:
        """Segment ``volume``. ``first``: the liver stage's segmentation of this volume when it
        was already made (with all class probabilities, as an evaluation of the liver model
        keeps them): used instead of predicting it again."""
        mean = self.liver_in_box == "mean"
        if first is None:
            first = self.liver.predict(volume, keep_probabilities, progress,
                                       keep_liver_probability=mean)
        else:
            first = _as_stage_one(first, volume, keep_probabilities, mean)
        spacing = volume.geometry.spacing
        box = liver_box(largest_liver_component(first.labels) >= 1, spacing, self.margin_mm)
        if box is None:  # no liver: nothing for the tumor stage to look at
            return Segmentation(np.zeros_like(first.labels), first.probabilities,
                                volume.geometry)
        second = predict_volume(self.tumor.model, volume, self.tumor.prep,
                                self.tumor.batch_size, keep_probabilities, False, progress,
                                box=box, tta=self.tumor.tta, keep_tumor_probability=True,
                                keep_liver_probability=mean)
        liver = first.labels >= 1
        if mean:  # inside the box, the mean of both stages' liver probability
            p_box = (first.liver_probability.within(box.index)
                     + second.liver_probability.within(box.index)) / 2
            liver[box.index] = p_box > 0.5
        labels = liver_and_tumor(liver, second.labels == 2)
        labels = postprocess(labels, spacing, self.rules, second.tumor_probability,
                             liver=first.labels >= 1)
        probs = None
        if keep_probabilities:
            p_tumor = second.probabilities[..., 2]
            p_first = liver_probability(first.probabilities)
            if mean:
                p_first[box.index] = p_box
            p_liver = np.maximum(p_first, p_tumor)
            probs = np.stack([1 - p_liver, p_liver - p_tumor, p_tumor], axis=-1)
        return Segmentation(labels, probs, volume.geometry, box, second.tumor_probability)

    def describe(self) -> dict:
        return {"kind": "cascade", "cascade": str(self.source) if self.source else None,
                "liver": self.liver.describe(), "tumor": self.tumor.describe(),
                "postprocess": self.rules.as_dict(), "roi_margin_mm": self.margin_mm,
                "liver_in_box": self.liver_in_box}


def _as_stage_one(first: Segmentation, volume: NiftiVolume, keep_probabilities: bool,
                  liver: bool) -> Segmentation:
    """A given stage-1 segmentation, checked against ``volume``, with the liver probability
    (classes 1 and 2) made from its class probabilities when ``liver`` needs it and it has
    none (as :func:`.predict.predict_volume` makes it when it keeps all probabilities).

    Raises
    ------
    ValueError
        It is not on the volume's grid, or lacks the probabilities asked for.
    """
    from dataclasses import replace

    from .postprocess import ClassProbability

    if first.labels.shape != volume.geometry.canonical_shape:
        raise ValueError(f"the given stage-1 labels {first.labels.shape} are not on the "
                         f"volume's grid {volume.geometry.canonical_shape}")
    p = first.probabilities
    if (keep_probabilities or liver and first.liver_probability is None) and p is None:
        raise ValueError("the given stage-1 segmentation has no class probabilities")
    if liver and first.liver_probability is None:
        first = replace(first, liver_probability=ClassProbability(liver_probability(p)))
    return first


def write_cascade(path: str | Path, liver_dir: str | Path, tumor_dir: str | Path,
                  postprocess: PostProcessing | None = None, liver_in_box: str = "mean"
                  ) -> Path:
    """Write a ``cascade.json`` naming two model folders (relative to its folder when they
    lie below a common root); ``path`` is the file or the folder to put it in.
    ``liver_in_box``: one of :data:`LIVER_IN_BOX` (a file without it means ``first``, the
    rule before the choice existed)."""
    if liver_in_box not in LIVER_IN_BOX:
        raise ValueError(f"liver_in_box must be one of {LIVER_IN_BOX}, got {liver_in_box!r}")
    import os

    path = Path(path)
    if path.suffix != ".json":
        path = path / CASCADE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)

    def relative(folder):
        return Path(os.path.relpath(Path(folder).resolve(), path.parent.resolve())).as_posix()

    record = {"format": 1, "liver": relative(liver_dir), "tumor": relative(tumor_dir),
              "postprocess": (postprocess or PostProcessing(largest_liver=True)).as_dict(),
              "liver_in_box": liver_in_box}
    write_json(path, record)
    return path


def _cascade_spec(path: Path) -> tuple[Path, dict] | None:
    """The cascade file at ``path`` (the file, or a folder holding it) and its record, or None
    when there is no such file (a single model folder).

    Raises
    ------
    LiverTumorError
        The file does not name both model folders.
    """
    file = path if path.suffix == ".json" else path / CASCADE_FILE
    if not file.is_file():
        return None
    spec = json.loads(file.read_text())
    for key in ("liver", "tumor"):
        if key not in spec:
            raise LiverTumorError(f"a cascade file names a '{key}' model folder", file)
    return file, spec


def read_rules(path: str | Path) -> PostProcessing:
    """The post-processing :func:`load_predictor` applies by default to ``path``: a cascade's
    rules (its ``cascade.json``), none for a single model folder. Loads no model.

    >>> read_rules("no/such/folder").any
    False
    """
    found = _cascade_spec(Path(path))
    return PostProcessing(**found[1].get("postprocess", {})) if found else PostProcessing()


def load_predictor(path: str | Path, postprocess=None, batch_size: int = 16,
                   tta: bool = False) -> SingleStage | Cascade:
    """A model folder, a folder holding ``cascade.json``, or a ``cascade.json`` file.

    ``postprocess``: :class:`PostProcessing` (or True: the largest liver component); None
    takes the cascade file's rules (none for a single model).

    Raises
    ------
    LiverTumorError
        Not a model folder (no ``preprocessing.json`` or ``model.keras``) nor a cascade; a
        cascade naming a missing or unfinished folder.
    """
    path = Path(path)
    if (found := _cascade_spec(path)) is not None:
        file, spec = found
        rules = (rules_of(postprocess) if postprocess is not None
                 else PostProcessing(**spec.get("postprocess", {})))
        stages = {key: SingleStage(file.parent / spec[key], PostProcessing(), batch_size, tta)
                  for key in ("liver", "tumor")}
        return Cascade(stages["liver"], stages["tumor"], rules, file,
                       spec.get("liver_in_box", "first"))
    return SingleStage(path, rules_of(postprocess or False), batch_size, tta)
