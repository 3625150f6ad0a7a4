"""Model inputs of a volume's slices, made exactly as the export made the training images:
the model folder's ``preprocessing.json`` (windows, histogram breaks, export size, liver-box
crop, context slices), the JPEG round trip, then the training pipeline's resize to the model's
input size."""

from __future__ import annotations

import numpy as np

from ..data.preprocessing import context_indices, jpeg_round_trip, tile, untile
from ..data.roi import Box
from ..data.slice_images import SliceImager
from ..data.volumes import NiftiVolume
from ..errors import LiverTumorError


def input_channels(prep: dict) -> int:
    """Channels of the model input a preprocessing record describes (3 + 2 x context)."""
    return len(prep.get("channels") or ()) or 3


def check_model_fits(model, prep: dict, where) -> None:
    """Raise ``LiverTumorError`` naming ``where`` when the model's input channels differ from
    what the preprocessing record makes (a model folder with another export's record)."""
    have, want = int(model.input_shape[-1]), input_channels(prep)
    if have != want:
        raise LiverTumorError(f"the model takes {have} input channels but its preprocessing.json "
                              f"makes {want} ({', '.join(prep.get('channels', []))}); the model "
                              "and the record come from different exports", where)


class SliceInputs:
    """Model inputs of slices of one volume, float32 (B, S, S, C) in [0, 1].

    Each slice's image is made by :class:`~livertumor.data.slice_images.SliceImager` (the
    export's lookup table over stored values: the same bytes as ``slice_channels`` of the HU
    slice), then goes through the stored JPEG's round trip; the context planes likewise, tiled
    as the export stores them.

    Parameters
    ----------
    volume : the CT
    prep : the model's preprocessing record
    image_size : the model's input side S
    box : crop every slice (and its context) to this liver box (the cascade's tumor stage)
    """

    def __init__(self, volume: NiftiVolume, prep: dict, image_size: int, box: Box | None = None):
        self.volume, self.prep, self.image_size, self.box = volume, prep, int(image_size), box
        self.context = int(prep.get("context") or 0)
        self.n_slices = volume.geometry.canonical_shape[2]
        self.quality = int(prep.get("jpeg_quality", 90))
        self._plane = box.plane if box is not None else None
        # the volume's own cached stored values (NiftiVolume.raw): the cascade's two stages
        # share one read of a .nii.gz
        self._imager = SliceImager(volume, prep)

    def image(self, k: int) -> np.ndarray:
        """uint8 (size, size, C) as stored by the export: the image, then the context."""
        image = jpeg_round_trip(self._imager(k, self._plane), self.quality)
        if not self.context:
            return image
        neighbours = context_indices(k, self.n_slices, self.context)
        planes = [self._imager(j, self._plane, first_only=True) for j in neighbours]
        stored = untile(jpeg_round_trip(tile(planes), self.quality), len(planes))
        return np.concatenate([image, stored], axis=-1)

    def batch(self, ks) -> np.ndarray:
        """float32 (len(ks), S, S, C) in [0, 1]: the training pipeline's resize of the images."""
        from ..training.dataset import resize_for_model

        return resize_for_model(np.stack([self.image(k) for k in ks]), self.image_size)
