"""A label map as a DICOM Segmentation object (DICOM-SEG) over the CT series it was made from.

Written with highdicom (``highdicom.seg.Segmentation``), as a BINARY segmentation with two
segments that reference the source series image by image, so that a DICOM viewer (OHIF,
3D Slicer, Weasis) opens it aligned over the CT:

====  ==============  ==========================================  ============================
 #    label           segmented property (category / type)        recommended display colour
====  ==============  ==========================================  ============================
 1    Liver           SCT 91723000 Anatomical Structure /         RGB (221, 130, 101)
                      SCT 10200004 Liver
 2    Liver tumor     SCT 49755003 Morphologically Abnormal       RGB (255, 220, 0)
                      Structure / SCT 108369006 Neoplasm,
                      anatomic region SCT 10200004 Liver
====  ==============  ==========================================  ============================

Segment 1 holds label 1 of the label map (liver parenchyma without its tumors, as in LiTS)
and segment 2 holds label 2; they do not overlap. Codes: DICOM PS3.16 CID 7150 (categories)
and the SNOMED CT codes DCMTK's and pydicom's code dictionaries use. Colours: the liver's is
that of 3D Slicer's GenericAnatomyColors table; that table has no tumor, so the tumor's is a
yellow chosen to stand out on the liver's colour and on grey CT.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import LiverTumorError
from .dicom import DicomVolume

SEGMENTS = (
    {"number": 1, "label": "Liver", "category": ("91723000", "Anatomical Structure"),
     "type": ("10200004", "Liver"), "region": None, "rgb": (221, 130, 101)},
    {"number": 2, "label": "Liver tumor",
     "category": ("49755003", "Morphologically Abnormal Structure"),
     "type": ("108369006", "Neoplasm"), "region": ("10200004", "Liver"),
     "rgb": (255, 220, 0)},
)
"""The two segments: label value = segment number."""


def _descriptions(algorithm: str, version: str) -> list:
    import highdicom as hd
    from pydicom.sr.coding import Code

    algo = hd.AlgorithmIdentificationSequence(
        name=algorithm, version=version, family=Code("123110", "DCM", "Artificial Intelligence"))
    out = []
    for s in SEGMENTS:
        out.append(hd.seg.SegmentDescription(
            segment_number=s["number"], segment_label=s["label"],
            segmented_property_category=Code(s["category"][0], "SCT", s["category"][1]),
            segmented_property_type=Code(s["type"][0], "SCT", s["type"][1]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algo,
            anatomic_regions=None if s["region"] is None
            else [Code(s["region"][0], "SCT", s["region"][1])],
            display_color=hd.color.CIELabColor.from_rgb(*s["rgb"]),
        ))
    return out


def make_dicom_seg(labels: np.ndarray, volume: DicomVolume, *, algorithm: str = "livertumor",
                   version: str = "0", series_description: str = "Liver and liver tumor"):
    """A canonical label map (0 background, 1 liver, 2 tumor) as a DICOM-SEG dataset.

    Parameters
    ----------
    labels : uint8 (rows, columns, slices) in the canonical orientation, on ``volume``'s grid
        (what :func:`livertumor.segment` and the predictors return)
    volume : the :class:`DicomVolume` the labels were predicted on (its headers are the
        source images)
    algorithm, version : the Segment Algorithm Name and version (e.g. the model folder)

    Returns
    -------
    highdicom.seg.Segmentation (a pydicom Dataset); :func:`write_dicom_seg` saves it.
    """
    import highdicom as hd

    if labels.shape != volume.geometry.canonical_shape:
        raise LiverTumorError(f"label map of shape {labels.shape} is not on the series' grid "
                              f"{volume.geometry.canonical_shape}", volume.path)
    values = np.unique(labels)
    if not set(values.tolist()) <= {0, 1, 2}:
        raise LiverTumorError(f"label values {values.tolist()}; expected 0, 1, 2", volume.path)
    # back to the series' own (rows, columns, frame) grid, frames in the headers' order
    frames = np.ascontiguousarray(volume.geometry.from_canonical(labels).transpose(2, 0, 1),
                                  dtype=np.uint8)
    source = list(volume.series.headers)
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(algorithm, version),
        series_instance_uid=hd.UID(),
        series_number=int(getattr(source[0], "SeriesNumber", 0) or 0) + 1000,
        sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="livertumor", manufacturer_model_name=algorithm,
        software_versions=version, device_serial_number="none",
        omit_empty_frames=bool(frames.any()),
    )
    seg.SeriesDescription = series_description
    return seg


def write_dicom_seg(labels: np.ndarray, volume: DicomVolume, out_path: str | Path,
                    **kw) -> Path:
    """:func:`make_dicom_seg` written to ``out_path`` (``.dcm``) atomically; nothing is
    written when an error is raised. ``kw``: ``algorithm``, ``version``,
    ``series_description``."""
    return save_dicom_seg(make_dicom_seg(labels, volume, **kw), out_path)


def save_dicom_seg(seg, out_path: str | Path) -> Path:
    """Save a dataset from :func:`make_dicom_seg` atomically."""
    out_path = Path(out_path)
    with atomic_path(out_path, keep_suffix=True) as tmp:
        seg.save_as(tmp)
    return out_path


def read_dicom_seg_labels(seg_path: str | Path, volume: DicomVolume) -> np.ndarray:
    """A DICOM-SEG's segments as a canonical label map on ``volume``'s grid (segment number
    = label), found frame by frame through the referenced source images."""
    import highdicom as hd

    seg = hd.seg.segread(seg_path)
    uids = [str(h.SOPInstanceUID) for h in volume.series.headers]
    numbers = [s["number"] for s in SEGMENTS]
    frames = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=numbers, combine_segments=True,
        relabel=False, skip_overlap_checks=True, assert_missing_frames_are_empty=True)
    stored = np.asarray(frames, np.uint8).transpose(1, 2, 0)
    return np.ascontiguousarray(volume.geometry.to_canonical(stored))
