"""A minimal export folder for training tests, built from demo cases without the exporter."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from livertumor.demo_data import make_case
from livertumor.windowing import freqhist_bins, to_nchan, to_uint8


def fake_export(out, n_cases=4, size=64, every=2):
    """Every ``every``-th slice of ``n_cases`` demo cases; the last case is the test split.

    The volumes themselves are written to ``out/raw`` (LiTS layout) and listed in
    ``out/cases.csv`` with their split, as the exporter does.
    """
    from livertumor.demo_data import make_demo_dataset

    out = Path(out)
    rows = []
    demo = make_demo_dataset(out / "raw", n_cases=n_cases, seed=0, size=size, progress=False)
    cases = [make_case(i, 0, size) for i in range(n_cases)]
    brks = freqhist_bins(np.concatenate([c.ct[:, :, ::4].ravel() for c in cases[:-1]]))
    for c in cases:
        split = "test" if c is cases[-1] else "train"
        for sub in ("images", "masks"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
        ct = c.ct.astype(np.float32)
        for k in range(0, ct.shape[2], every):
            name = f"case{c.case_id:03d}_s{k:04d}"
            img = to_uint8(to_nchan(ct[:, :, k], ["liver", "abdomen_soft"], bins=brks))
            Image.fromarray(img).save(out / split / "images" / f"{name}.jpg", quality=90)
            Image.fromarray(c.mask[:, :, k]).save(out / split / "masks" / f"{name}.png")
            rows.append(dict(
                case_id=c.case_id, split=split, slice_index=k,
                image=f"{split}/images/{name}.jpg", mask=f"{split}/masks/{name}.png",
                liver_pixels=int((c.mask[:, :, k] >= 1).sum()),
                tumor_pixels=int((c.mask[:, :, k] == 2).sum())))
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    pd.DataFrame({
        "case_id": demo["case_id"],
        "split": ["train"] * (n_cases - 1) + ["test"],
        "volume_path": [str(out / "raw" / p) for p in demo["volume"]],
        "mask_path": [str(out / "raw" / p) for p in demo["segmentation"]],
    }).to_csv(out / "cases.csv", index=False)
    prep = {"windows": [[150, 30], [400, 50]], "bins": brks.tolist(), "size": size}
    (out / "preprocessing.json").write_text(json.dumps(prep))
    return out
