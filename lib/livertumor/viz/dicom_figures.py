"""A DICOM-SEG drawn over the CT images it references, read straight from the files.

A check that does not trust the writer: the CT images are the series' own files (pixel data,
rescale, as a DICOM viewer shows them: rows down, columns to the right), and each segment frame
is put on the image that its Derivation Image / Source Image Sequence names, in the colour of
its segment's Recommended Display CIELab Value. Nothing here goes through
:mod:`livertumor.data.dicom` or its canonical orientation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.windowing import WINDOWS, windowed


def _referenced_sop(frame_item) -> str:
    """SOPInstanceUID of the source image a SEG frame was derived from."""
    derivation = frame_item.DerivationImageSequence[0]
    return str(derivation.SourceImageSequence[0].ReferencedSOPInstanceUID)


def read_seg_frames(seg_path: str | Path) -> tuple[dict, dict]:
    """The frames of a BINARY DICOM-SEG by source image, and the segments' colours.

    Returns
    -------
    frames : {source SOPInstanceUID: {segment number: bool (rows, columns)}}
    segments : {segment number: (label, RGB floats in [0, 1])}
    """
    import pydicom
    from highdicom.color import CIELabColor

    seg = pydicom.dcmread(seg_path)
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns).astype(bool)
    frames: dict = {}
    for k, item in enumerate(seg.PerFrameFunctionalGroupsSequence):
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frames.setdefault(_referenced_sop(item), {})[number] = pixels[k]
    segments = {}
    for s in seg.SegmentSequence:
        rgb = CIELabColor.from_dicom_value(s.RecommendedDisplayCIELabValue).to_rgb()
        segments[int(s.SegmentNumber)] = (str(s.SegmentLabel), np.asarray(rgb) / 255.0)
    return frames, segments


def dicom_seg_figure(seg_path: str | Path, series_dir: str | Path, n_images: int = 4,
                     window: str = "liver", alpha: float = 0.45):
    """The ``n_images`` source images with the most segmented pixels, the segments blended in
    their recommended colours, in the files' own pixel layout.

    Returns
    -------
    matplotlib Figure
    """
    import matplotlib.pyplot as plt
    import pydicom
    from matplotlib.patches import Patch

    frames, segments = read_seg_frames(seg_path)
    files = {}
    for path in sorted(p for p in Path(series_dir).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM
            continue
        if str(getattr(ds, "SOPInstanceUID", "")) in frames:
            files[str(ds.SOPInstanceUID)] = path
    chosen = sorted(frames, key=lambda uid: -sum(int(m.sum()) for m in frames[uid].values()))
    chosen = [uid for uid in chosen if uid in files][:n_images]
    fig, axes = plt.subplots(1, max(1, len(chosen)), figsize=(4 * max(1, len(chosen)), 4.4),
                             squeeze=False)
    for ax, uid in zip(axes[0], chosen, strict=False):
        ds = pydicom.dcmread(files[uid])
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        grey = windowed(hu, *WINDOWS[window])
        rgb = np.repeat(grey[..., None], 3, axis=-1)
        for number, mask in frames[uid].items():
            colour = segments[number][1]
            rgb[mask] = (1 - alpha) * rgb[mask] + alpha * colour
        ax.imshow(rgb, interpolation="nearest")
        counts = ", ".join(f"{segments[n][0]} {int(m.sum())} px" for n, m in
                           sorted(frames[uid].items()))
        ax.set_title(f"{files[uid].name} (instance {ds.InstanceNumber}, z "
                     f"{float(ds.ImagePositionPatient[2]):.1f} mm)\n{counts}", fontsize=8)
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=f"{n} {label}")
                        for n, (label, c) in sorted(segments.items())],
               loc="lower center", ncol=len(segments), frameon=False)
    fig.suptitle(f"{Path(seg_path).name} over its source images (read from the files)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.95))
    return fig
