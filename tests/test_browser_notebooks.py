"""The viewers in JupyterLab, in a real browser (headless Chromium): sliders redraw the image.

What a person does: open notebook 01 and 02 in JupyterLab, Run > Run All Cells, drag the slice
slider (01) and the window-width slider (02), press arrow keys on them; and the same with the
prediction viewer of notebook 05 (in a small notebook of its own: 05 needs trained models).
The tests assert from screenshots that the image changes and comes back when the slider does,
and that no widget error is shown.

Screenshots go to ``outputs/browser/`` (each viewer before and after a move, and the whole
page), with ``timings.json``: seconds from a key press on a slider to the new image on screen.
No test asserts a timing. Run with ``make test-browser``, which installs Chromium first.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest
from papermill.iorw import load_notebook_node
from papermill.parameterize import parameterize_notebook

from livertumor.data.windowing import WINDOWS
from livertumor.series.lab import KERNEL_DISPLAY_NAME
from livertumor.series.runner import prepare_data

from lab_browser import (
    CHROMIUM,
    LabServer,
    NotebookPage,
    changed_fraction,
    launch_chromium,
    png_array,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT_DIR = Path(__file__).resolve().parents[1]
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
SCREENSHOTS = PROJECT_DIR / "outputs" / "browser"
DEMO = {"n_cases": 2, "size": 512, "seed": 0, "broken_examples": True}
"""Demo cases of LiTS size, so the timings are those of 512x512 slices."""

PREDICTION_NOTEBOOK = "05_prediction_viewer"


def unavailable(reason: str) -> None:
    """Skip, or fail when the run asked for the browser tests (``make test-browser``)."""
    if os.environ.get("LIVERTUMOR_BROWSER_TESTS") == "required":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (`make test-browser` installs it)")
    if not Path(CHROMIUM).exists():
        unavailable(f"no Chromium at {CHROMIUM} (`make test-browser` installs Debian's)")
    with sync_playwright() as p:
        yield p


def prediction_notebook(data_dir: Path) -> nbformat.NotebookNode:
    """A notebook showing the prediction viewer of notebook 05 on a demo case, with a
    made-up prediction (the liver moved by 12 rows, the tumors missed) and a perfect one."""
    code = f"""\
import numpy as np

import livertumor as lt
from livertumor.viz import figures
from livertumor.viz.viewers import PredictionViewer

case = lt.select_case(lt.find_cases({str(data_dir)!r}), -1)
ct = lt.read_nii(case["volume_path"])
truth = lt.read_mask(case["mask_path"])
shifted = np.zeros_like(truth)
shifted[12:] = truth[:-12] >= 1
PredictionViewer(ct, truth, {{"shifted": shifted, "perfect": truth}},
                 lt.read_geometry(case["volume_path"]).spacing,
                 start=lt.largest_slice(truth, 2))"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": KERNEL_DISPLAY_NAME,
                                 "language": "python"}
    return nb


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A temporary folder served by JupyterLab: copies of 01 and 02 whose parameters point at
    demo cases made here, and the prediction-viewer notebook. The repository's notebooks are
    never opened, so nothing is written into them."""
    root = tmp_path_factory.mktemp("lab")
    data = prepare_data(root / "data", DEMO, progress=False)
    notebooks = root / "work" / "notebooks"
    notebooks.mkdir(parents=True)
    for name in ("01_data_loading", "02_windowing"):
        nb = parameterize_notebook(load_notebook_node(str(NOTEBOOKS_DIR / f"{name}.ipynb")), {
            "data_dir": str(data), "output_dir": str(root / "outputs"), "generate_demo": False})
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    nbformat.write(prediction_notebook(data), notebooks / f"{PREDICTION_NOTEBOOK}.ipynb")
    return root


@pytest.fixture(scope="module")
def lab(workspace):
    with LabServer(workspace / "work", workspace / "jupyter") as server:
        yield server


@pytest.fixture(scope="module")
def browser(playwright):
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def screenshots():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    timings: dict[str, dict] = {}
    yield SCREENSHOTS, timings
    (SCREENSHOTS / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")


@pytest.fixture
def notebook(browser, lab, screenshots, request):
    """A fresh browser page on the JupyterLab server; its last view and its console messages
    are saved as ``<test>_last.png`` and ``<test>_console.log`` whatever the outcome."""
    folder, _ = screenshots
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    nb = NotebookPage(context.new_page(), lab)
    try:
        yield nb
    finally:
        name = request.node.name.removeprefix("test_")
        try:
            nb.page.screenshot(path=folder / f"{name}_last.png")
        finally:
            (folder / f"{name}_console.log").write_text("\n".join(nb.console) + "\n")
            context.close()


def shot(locator, path: Path | None = None) -> np.ndarray:
    """Screenshot of one element as an RGB array (also saved when ``path`` is given)."""
    return png_array(locator.screenshot(path=path, animations="disabled"))


def src(image) -> str:
    return image.evaluate("el => el.src")


def key_timings(nb: NotebookPage, output, slider, caption: str, n: int = 5) -> dict:
    """Seconds from a key press on ``slider`` to the redrawn image, over ``n`` presses.

    ``caption`` is a format string of the slider value that the caption shows after a move.
    """
    image = output.locator("img.widget-image")
    key = "ArrowLeft" if nb.slider_value(slider) > n else "ArrowRight"
    seconds = []
    for _ in range(n):
        old, value = src(image), nb.slider_value(slider)
        t0 = time.perf_counter()
        nb.press(slider, key)
        new = value + (1 if key == "ArrowRight" else -1)
        nb.settle(output, caption.format(new), old, pause_ms=0)
        seconds.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3),
            "presses": n}


def open_and_run(nb: NotebookPage, name: str, timings: dict) -> None:
    nb.open(f"notebooks/{name}.ipynb")
    assert nb.kernel_name() == KERNEL_DISPLAY_NAME
    timings[f"{name}: run all cells"] = {"seconds": round(nb.run_all(), 1)}
    assert nb.widget_errors() == []


def test_slice_viewer_of_01_follows_its_slider(notebook, screenshots):
    folder, timings = screenshots
    open_and_run(notebook, "01_data_loading", timings)
    output = notebook.viewer()
    image, slider = output.locator("img.widget-image"), notebook.slider(output, "slice")
    start = notebook.slider_value(slider)
    top = int(float(slider.locator(".noUi-handle").get_attribute("aria-valuemax")))
    before = shot(image)
    shot(output, folder / "01_slice_before.png")

    old = src(image)
    notebook.drag(slider, 60 if start < top / 2 else -60)
    moved = notebook.slider_value(slider)
    assert abs(moved - start) >= 3
    notebook.settle(output, f"slice {moved} of {top}", old)
    after = shot(image)
    shot(output, folder / "01_slice_after.png")
    notebook.page.screenshot(path=folder / "01_page.png")
    assert changed_fraction(before, after) > 0.01

    old = src(image)
    notebook.press(slider, "ArrowLeft" if moved > start else "ArrowRight", abs(moved - start))
    assert notebook.slider_value(slider) == start
    notebook.settle(output, f"slice {start} of {top}", old)
    np.testing.assert_array_equal(shot(image), before)  # the same slice looks the same again

    timings["01 slice viewer: key press to new image"] = key_timings(
        notebook, output, slider, "slice {} of")
    assert notebook.widget_errors() == []


def test_window_explorer_of_02_follows_its_sliders_and_presets(notebook, screenshots):
    folder, timings = screenshots
    open_and_run(notebook, "02_windowing", timings)
    output = notebook.viewer()
    image, width = output.locator("img.widget-image"), notebook.slider(output, "width (HU)")
    w0, l0 = WINDOWS["liver"]
    assert notebook.slider_value(width) == w0
    notebook.settle(output, f"W {w0} / L {l0}:", "")
    before = shot(image)
    shot(output, folder / "02_window_before.png")

    old = src(image)
    notebook.drag(width, 40)
    w1 = notebook.slider_value(width)
    assert w1 > w0
    notebook.settle(output, f"W {w1} / L {l0}:", old)
    after = shot(image)
    shot(output, folder / "02_window_after.png")
    notebook.page.screenshot(path=folder / "02_page.png")
    assert changed_fraction(before, after) > 0.01

    old = src(image)
    output.get_by_role("button", name="spine_bone", exact=True).click()
    wb, lb = WINDOWS["spine_bone"]
    notebook.settle(output, f"W {wb} / L {lb}:", old)
    assert notebook.slider_value(width) == wb
    shot(output, folder / "02_window_bone_preset.png")

    old = src(image)
    output.get_by_role("button", name="liver", exact=True).click()
    notebook.settle(output, f"W {w0} / L {l0}:", old)
    np.testing.assert_array_equal(shot(image), before)

    # level, not width: widths 2k and 2k + 1 give the same window (w // 2), the same image
    timings["02 window explorer: key press to new image"] = key_timings(
        notebook, output, notebook.slider(output, "level (HU)"), f"W {w0} / L " + "{}:")
    assert notebook.widget_errors() == []


def test_prediction_viewer_of_05_follows_its_slider_and_model_choice(notebook, screenshots):
    folder, timings = screenshots
    open_and_run(notebook, PREDICTION_NOTEBOOK, timings)
    output = notebook.viewer()
    image, slider = output.locator("img.widget-image"), notebook.slider(output, "slice")
    start = notebook.slider_value(slider)
    before = shot(image)
    shot(output, folder / "05_prediction_before.png")

    old = src(image)
    notebook.press(slider, "ArrowRight", 4)
    notebook.settle(output, f"slice {start + 4} of", old)
    after = shot(image)
    shot(output, folder / "05_prediction_after.png")
    assert changed_fraction(before, after) > 0.01

    old = src(image)
    output.get_by_label("prediction", exact=True).select_option("perfect")
    notebook.settle(output, "perfect", old)
    perfect = shot(image)
    shot(output, folder / "05_prediction_perfect.png")
    notebook.page.screenshot(path=folder / "05_page.png")
    w = perfect.shape[1]
    # CT and reference panels stay; the prediction panel now shows the reference's labels
    np.testing.assert_array_equal(perfect[:, : int(0.6 * w)], after[:, : int(0.6 * w)])
    assert changed_fraction(perfect[:, int(0.7 * w):], after[:, int(0.7 * w):]) > 0.01
    assert "liver Dice 1.000" in output.inner_text()

    timings["05 prediction viewer: key press to new image"] = key_timings(
        notebook, output, slider, "slice {} of")
    assert notebook.widget_errors() == []
