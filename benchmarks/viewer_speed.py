"""Slider response of the notebook viewers on 512x512 slices, and what one move sends.

Prints, in one run on this machine, for the viewers of notebooks 01 (``SliceViewer``), 02
(``WindowExplorer``) and 05 (``PredictionViewer``) on a synthetic 512x512 demo case:

- the kernel's time per slider move (set the slider's value -> the new PNG is in the image
  widget): median and 95th percentile over many moves, and how much of it is rendering (numpy)
  and PNG encoding;
- what one move sends to the browser: every widget message with its keys and bytes. Only the
  image (a PNG in a binary buffer) and its caption text change; no figure, no layout, no other
  widget is re-sent;
- for comparison, a matplotlib figure redrawn per move (``imshow`` + ``savefig`` of the same
  slice as PNG), what ``interact`` with pyplot would do.

The round trip in a real browser (key press on the slider -> new image on screen) is measured by
``make test-browser`` into ``outputs/browser/timings.json``; this script prints it when that
file exists.

Run: ``python benchmarks/viewer_speed.py``.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from livertumor.demo.generator import make_case  # noqa: E402
from livertumor.viz.figures import render_slice  # noqa: E402
from livertumor.viz.viewers import (  # noqa: E402
    PredictionViewer,
    SliceViewer,
    WindowExplorer,
    png_bytes,
)

PROJECT_DIR = Path(__file__).resolve().parents[1]

MOVES = 60


class MessageLog:
    """Records the messages widgets send to the front end (``Widget._send``)."""

    def __init__(self):
        self.messages: list[tuple[str, str, list[str], int]] = []
        self._orig = ipywidgets.Widget._send

    def __enter__(self) -> MessageLog:
        log, orig = self, self._orig

        def record(widget, msg, buffers=None):
            keys = sorted(set(msg.get("state", {})) | {p[0] for p in msg.get("buffer_paths", [])})
            nbytes = sum(len(b) for b in buffers or [])
            nbytes += len(json.dumps(msg.get("state", {}), default=str))
            label = getattr(widget, "description", "") or ""
            log.messages.append((type(widget).__name__, label, keys, nbytes))
            return orig(widget, msg, buffers)

        ipywidgets.Widget._send = record
        return self

    def __exit__(self, *exc) -> None:
        ipywidgets.Widget._send = self._orig


def ms_per_move(slider, values) -> list[float]:
    """Milliseconds from setting ``slider.value`` to the new PNG in the image widget."""
    times = []
    for v in values:
        t0 = time.perf_counter()
        slider.value = int(v)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def parts_ms(slider, values, render) -> tuple[float, float, float]:
    """Median ms of ``render()`` and of its PNG encoding at each value, mean PNG KiB."""
    r, p, size = [], [], []
    for v in values:
        slider.value = int(v)
        t0 = time.perf_counter()
        img = render()
        t1 = time.perf_counter()
        size.append(len(png_bytes(img)) / 1024)
        p.append((time.perf_counter() - t1) * 1000)
        r.append((t1 - t0) * 1000)
    return statistics.median(r), statistics.median(p), float(np.mean(size))


def matplotlib_ms(hu: np.ndarray, mask: np.ndarray, n: int = 10) -> float:
    """Median ms to redraw a whole pyplot figure of one slice and its overlay as PNG."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.imshow(hu, cmap="gray", vmin=-150, vmax=250)
        ax.imshow(np.ma.masked_equal(mask, 0), alpha=0.4, cmap="autumn")
        ax.set_axis_off()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def report(name: str, slider, values, render) -> float:
    """Print the figures of one viewer; return its median ms per move."""
    times = ms_per_move(slider, values)
    r_ms, p_ms, kib = parts_ms(slider, values, render)
    slider.value = int(values[len(values) // 2])
    with MessageLog() as log:
        slider.value = int(values[len(values) // 2 + 1])
    print(f"{name}")
    print(f"  per slider move: median {statistics.median(times):5.1f} ms, "
          f"95th percentile {np.percentile(times, 95):5.1f} ms ({len(times)} moves), of which "
          f"render {r_ms:.1f} ms, PNG {p_ms:.1f} ms (mean {kib:.0f} KiB)")
    print("  sent to the browser for one move:")
    for widget, label, keys, nbytes in log.messages:
        what = f"{widget} '{label}'" if label else widget
        print(f"    {what:<24} {', '.join(keys):<8} {nbytes / 1024:8.1f} KiB")
    return statistics.median(times)


def main() -> None:
    t0 = time.perf_counter()
    case = make_case(0, seed=0, size=512)
    ct, mask = case.ct.astype(np.float32), case.mask
    liver = np.flatnonzero((mask >= 1).any(axis=(0, 1)))
    values = np.linspace(liver[0], liver[-1], MOVES).astype(int)
    print(f"synthetic case {ct.shape} (made in {time.perf_counter() - t0:.1f} s); "
          f"{MOVES} slider moves through the liver. The slider's own value is listed among "
          "the messages because this script moves it; in JupyterLab the move comes from the "
          "page.\n")

    viewer = SliceViewer(ct, mask, case.spacing, start=int(values[0]))
    ours = report("SliceViewer (01), 512x512 with mask overlay", viewer.slider, values,
                  lambda: viewer.render(viewer.slider.value))

    explorer = WindowExplorer(ct, start=int(values[MOVES // 2]), preset="liver")
    report("WindowExplorer (02), window width 150 -> 2500 HU", explorer.width,
           np.linspace(150, 2500, MOVES).astype(int), explorer.render)

    shifted = np.zeros_like(mask)
    shifted[8:] = mask[:-8] >= 1
    pred = PredictionViewer(ct, mask, {"shifted": shifted, "perfect": mask}, case.spacing,
                            start=int(values[0]))
    report("PredictionViewer (05), 3 panels of 512x512", pred.slider, values,
           lambda: pred.render(pred.slider.value))

    k = int(values[MOVES // 2])
    mpl = matplotlib_ms(ct[:, :, k], mask[:, :, k])
    print(f"\nfor comparison, a pyplot figure redrawn per move (imshow + savefig PNG): "
          f"{mpl:.0f} ms, {mpl / ours:.1f}x the SliceViewer's {ours:.1f} ms")
    render_only = statistics.median(
        [_timed(lambda: render_slice(ct[:, :, k], mask[:, :, k])) for _ in range(20)])
    print(f"render_slice alone (window + overlay, 512x512): {render_only:.1f} ms")

    browser = PROJECT_DIR / "outputs" / "browser" / "timings.json"
    if browser.exists():
        print(f"\nin a real browser ({browser.relative_to(PROJECT_DIR)}, from make test-browser):")
        for name, t in json.loads(browser.read_text()).items():
            if "median_s" in t:
                print(f"  {name}: median {t['median_s'] * 1000:.0f} ms, "
                      f"max {t['max_s'] * 1000:.0f} ms over {t['presses']} presses")
    else:
        print("\n(in-browser round trip: run `make test-browser`, then this script again)")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000


if __name__ == "__main__":
    main()
