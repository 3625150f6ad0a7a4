"""What an export leaves: :class:`ExportResult` (the manifest, the cases table and the
preprocessing), :func:`load_export` to read a finished folder back, :func:`tree_digest` to
compare two."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import LiverTumorError

MANIFEST_COLUMNS = ["case_id", "split", "slice_index", "image", "mask", "liver_pixels",
                    "tumor_pixels"]
"""Columns of ``manifest.csv``; ``liver_pixels`` counts labels 1 and 2 (liver with its
tumors, as LiTS scores the liver), ``tumor_pixels`` label 2, both in the exported mask."""

BOX_COLUMNS = ["row0", "row1", "col0", "col1"]
"""Extra columns of a ROI export's manifest: the liver box's rows and columns in the
canonical slice (:class:`livertumor.data.roi.Box`), the crop each image was made from."""


def manifest_columns(prep: dict) -> list[str]:
    """The columns of ``manifest.csv`` for an export with this preprocessing record:
    :data:`MANIFEST_COLUMNS`, then ``context`` (the context image, when ``context`` > 0) and
    :data:`BOX_COLUMNS` (a ROI export)."""
    return (MANIFEST_COLUMNS + (["context"] if prep.get("context") else [])
            + (BOX_COLUMNS if prep.get("roi") else []))
CASES_COLUMNS = ["case_id", "split", "status", "reason", "has_tumor", "slices_exported",
                 "volume_path", "mask_path", "warnings"]
"""Columns of ``cases.csv``; ``status`` is ``ok`` (exported), ``bad`` or ``unpaired``."""


@dataclass
class ExportResult:
    """What :func:`export_slices` did (or :func:`load_export` found).

    Attributes
    ----------
    out_dir : Path
        The export folder.
    manifest : DataFrame
        ``manifest.csv``: columns :data:`MANIFEST_COLUMNS`, sorted by case and slice.
    cases : DataFrame
        ``cases.csv``: columns :data:`CASES_COLUMNS`, one row per case found, by case id.
    preprocessing : dict
        The content of ``preprocessing.json``.
    exported_now : list of int
        Cases exported by this call (the others were done by an earlier, interrupted one).
    failed : list of int
        Cases that passed the survey but failed while being exported (their files changed in
        between); empty when every good case was exported.
    shard : str or None
        ``"I/N"`` for one shard of a sharded export (``manifest`` and ``cases`` then hold its
        own cases only); None for a whole export.
    merged : bool
        For a shard: whether this call found every shard finished and wrote the merged
        manifest.csv, cases.csv and preprocessing.json.
    """

    out_dir: Path
    manifest: pd.DataFrame
    cases: pd.DataFrame
    preprocessing: dict
    exported_now: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    shard: str | None = None
    merged: bool = False

    @property
    def complete(self) -> bool:
        """True when every case that passed the survey was exported."""
        return not self.failed

    def split_summary(self) -> pd.DataFrame:
        """Patients, patients with tumor, slices, slices with liver and with tumor per split.

        Returns a DataFrame indexed ``train``, ``test``.
        """
        m, c = self.manifest, self.cases
        rows = {}
        for split in ("train", "test"):
            part = m[m["split"] == split]
            cases = c[(c["status"] == "ok") & (c["split"] == split)]
            rows[split] = {"cases": int(part["case_id"].nunique()),
                           "cases with tumor": int(cases["has_tumor"].astype(bool).sum()),
                           "slices": len(part),
                           "slices with liver": int((part["liver_pixels"] > 0).sum()),
                           "slices with tumor": int((part["tumor_pixels"] > 0).sum())}
        return pd.DataFrame.from_dict(rows, orient="index")

    def sample(self, n_tumor: int = 4, n_liver: int = 2, n_empty: int = 2,
               seed: int = 0) -> pd.DataFrame:
        """A few manifest rows to look at: slices with tumor, with liver only, and without
        liver (as many of each as exist, up to the numbers asked for)."""
        m = self.manifest
        groups = [(m["tumor_pixels"] > 0, n_tumor),
                  ((m["liver_pixels"] > 0) & (m["tumor_pixels"] == 0), n_liver),
                  (m["liver_pixels"] == 0, n_empty)]
        return pd.concat([m[sel].sample(min(n, int(sel.sum())), random_state=seed)
                          for sel, n in groups])

    def skipped(self) -> pd.DataFrame:
        """Cases that were not exported: ``case_id``, ``status``, ``reason``."""
        c = self.cases
        return c[c["status"] != "ok"][["case_id", "status", "reason"]].reset_index(drop=True)

    def summary_text(self, max_skipped: int = 12) -> str:
        """The one-screen summary the command line prints."""
        s = self.split_summary()
        skipped = self.skipped()
        done = int(self.manifest["case_id"].nunique())
        lines = [f"exported {done} of {len(self.cases)} cases to {self.out_dir}"]
        if self.shard is not None:
            lines[0] = (f"shard {self.shard}: exported {done} of its {len(self.cases)} cases "
                        f"to {self.out_dir}")
        for split in ("train", "test"):
            r = s.loc[split]
            lines.append(f"  {split + ':':6} {r['cases']:4d} cases ({r['cases with tumor']} "
                         f"with tumor), {r['slices']:6d} slices ({r['slices with liver']} with "
                         f"liver, {r['slices with tumor']} with tumor)")
        lines.append(f"  exported by this run: {len(self.exported_now)} cases; already done "
                     f"before: {done - len(self.exported_now)}")
        lines.append(f"  skipped: {len(skipped)} cases" + (":" if len(skipped) else ""))
        for row in skipped.head(max_skipped).itertuples():
            lines.append(f"    case {row.case_id} ({row.status}): {row.reason}")
        if len(skipped) > max_skipped:
            lines.append(f"    ... and {len(skipped) - max_skipped} more, see cases.csv")
        if self.failed:
            lines.append(f"  NOT exported although they passed the checks: {self.failed} "
                         "(see cases.csv; run again to retry)")
        if self.shard is not None:
            lines.append("  all shards finished: manifest.csv, cases.csv and preprocessing.json "
                         "written" if self.merged else
                         "  other shards are still running: the last one to finish writes "
                         "manifest.csv (or run: livertumor export --merge OUT_DIR)")
        return "\n".join(lines)


def load_export(out_dir: str | Path) -> ExportResult:
    """Read a finished export folder back: manifest, cases table and preprocessing.

    Raises
    ------
    LiverTumorError
        When ``manifest.csv``, ``cases.csv`` or ``preprocessing.json`` is missing.
    """
    out_dir = Path(out_dir)
    for name in ("manifest.csv", "cases.csv", "preprocessing.json"):
        if not (out_dir / name).exists():
            raise LiverTumorError(f"no {name}: not a finished export folder (run "
                                  "python -m livertumor export DATA_DIR OUT_DIR)", out_dir)
    cases = pd.read_csv(out_dir / "cases.csv", keep_default_na=False,
                        na_values={"has_tumor": [""]})
    return ExportResult(out_dir, pd.read_csv(out_dir / "manifest.csv"), cases,
                        json.loads((out_dir / "preprocessing.json").read_text()))


def tree_digest(out_dir: str | Path) -> dict[str, str]:
    """sha256 of every visible file under an export folder (relative path -> hex digest).

    Hidden files and folders (``.export/``, ``.*.part``) are left out. Two exports with the
    same digest are byte-identical.
    """
    import hashlib

    out_dir = Path(out_dir)
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out_dir.rglob("*"))
            if p.is_file() and not any(part.startswith(".")
                                       for part in p.relative_to(out_dir).parts)}
