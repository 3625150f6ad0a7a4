"""Model inputs of a volume's slices, made exactly as the export made the training images:
the model folder's ``preprocessing.json`` (windows, histogram breaks, export size, liver-box
crop, context slices), the JPEG round trip, then the training pipeline's resize to the model's
input size."""

from __future__ import annotations

import numpy as np

from ..data.preprocessing import context_indices, context_planes, slice_to_jpeg_array
from ..data.roi import Box, crop
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
        self._hu: dict[int, np.ndarray] = {}

    def _slice(self, k: int) -> np.ndarray:
        """The HU slice k, cropped to the box; the last few are kept for the context."""
        if k not in self._hu:
            hu = self.volume.hu_slice(k)
            self._hu[k] = np.ascontiguousarray(crop(hu, self.box)) if self.box else hu
        return self._hu[k]

    def image(self, k: int) -> np.ndarray:
        """uint8 (size, size, C) as stored by the export: the image, then the context."""
        image = slice_to_jpeg_array(self._slice(k), self.prep)
        if not self.context:
            return image
        neighbours = context_indices(k, self.n_slices, self.context)
        planes = context_planes([self._slice(j) for j in neighbours], self.prep)
        return np.concatenate([image, planes], axis=-1)

    def batch(self, ks) -> np.ndarray:
        """float32 (len(ks), S, S, C) in [0, 1]: the training pipeline's resize of the images."""
        from ..training.dataset import resize_for_model

        ks = list(ks)
        images = np.stack([self.image(k) for k in ks])
        keep = set(range(ks[0] - self.context, ks[-1] + self.context + 1))
        self._hu = {k: v for k, v in self._hu.items() if k in keep}
        return resize_for_model(images, self.image_size)
