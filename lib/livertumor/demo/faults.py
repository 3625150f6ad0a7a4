"""Deliberately broken files next to the demo cases, so the bad-case handling is on show.

Real LiTS copies contain surprises (interrupted downloads, stray masks); the demo data gets two
of them, clearly numbered apart from the generated cases (900+):

- ``volume_pt9/volume-900.nii``: the first half of demo volume 0 (a truncated download), with a
  proper ``segmentations/segmentation-900.nii`` beside it; listed as ``bad``;
- ``segmentations/segmentation-901.nii``: a mask with no volume; listed as ``unpaired``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..atomic import atomic_path, write_bytes
from ..errors import LiverTumorError

TRUNCATED_ID = 900
UNPAIRED_ID = 901


def _find(data_dir: Path, name: str) -> Path:
    hits = sorted(p for p in data_dir.rglob(f"{name}.nii*") if not p.name.startswith("."))
    if not hits:
        raise LiverTumorError(f"{name}.nii not found; generate the demo cases first", data_dir)
    return hits[0]


def write_broken_examples(data_dir: str | Path, source_case: int = 0) -> list[Path]:
    """Add a truncated volume (case 900) and an unpaired mask (case 901) to a demo folder.

    Idempotent: files already present are left alone. Returns the paths of the broken files.
    """
    data_dir = Path(data_dir)
    volume = _find(data_dir, f"volume-{source_case}")
    mask = _find(data_dir, f"segmentation-{source_case}")
    ext = ".nii.gz" if volume.name.endswith(".gz") else ".nii"
    truncated = data_dir / "volume_pt9" / f"volume-{TRUNCATED_ID}{ext}"
    its_mask = mask.with_name(f"segmentation-{TRUNCATED_ID}{ext}")
    unpaired = mask.with_name(f"segmentation-{UNPAIRED_ID}{ext}")
    if not truncated.exists():
        data = volume.read_bytes()
        write_bytes(truncated, data[: len(data) // 2])
    for dest in (its_mask, unpaired):
        if not dest.exists():
            with atomic_path(dest) as tmp:
                shutil.copyfile(mask, tmp)
    return [truncated, unpaired]
