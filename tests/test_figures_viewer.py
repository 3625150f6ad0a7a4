"""Static figures, slice rendering and the ipywidgets viewers (without a browser)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from PIL import Image

from livertumor.data.slices import key_slices, largest_slice
from livertumor.viz import figures
from livertumor.viz.figures import LABEL_COLORS, render_slice
from livertumor.viz.viewers import PredictionViewer, SliceViewer, WindowExplorer

from conftest import anatomy


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_render_slice_is_windowed_grey_with_coloured_labels():
    hu = np.array([[-1000.0, 30.0], [1000.0, 30.0]])
    mask = np.array([[0, 0], [0, 2]], np.uint8)
    rgb = render_slice(hu, mask, (150, 30))
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == (0, 0, 0) and tuple(rgb[1, 0]) == (255, 255, 255)
    assert rgb[0, 1, 0] == rgb[0, 1, 1] == rgb[0, 1, 2]  # unlabelled mid-grey stays grey
    r, g, b = rgb[1, 1].astype(int)
    assert r > g and r > b  # tumor is tinted towards red
    np.testing.assert_array_equal(render_slice(hu, mask, (150, 30), alpha=0),
                                  render_slice(hu, None, (150, 30)))


def test_largest_and_key_slices():
    _, mask = anatomy()
    assert largest_slice(mask, 2) in range(3, 6)
    assert largest_slice(np.zeros_like(mask), 2) is None
    ks = key_slices(mask, n=4)
    assert ks == sorted(ks) and all((mask[:, :, k] >= 1).any() for k in ks)
    assert any((mask[:, :, k] == 2).any() for k in ks)


def test_slice_viewer_updates_only_its_image_on_slider_moves():
    ct, mask = anatomy((40, 30, 12))
    viewer = SliceViewer(ct.astype(np.float32), mask, spacing=(0.8, 0.8, 2.5), start=4)
    first = viewer.image.value
    np.testing.assert_array_equal(decode(first), viewer.render(4))
    children_before = list(viewer.widget.children)
    viewer.show(0)
    assert viewer.image.value != first
    np.testing.assert_array_equal(decode(viewer.image.value), viewer.render(0))
    assert list(viewer.widget.children) == children_before  # same widgets, new image bytes
    assert "slice 0" in viewer.caption.value and "cm²" in viewer.caption.value
    viewer.window.value = "liver"
    np.testing.assert_array_equal(decode(viewer.image.value), render_slice(
        ct[:, :, 0].astype(np.float32), mask[:, :, 0], "liver"))


def test_slice_viewer_rejects_a_mask_of_another_shape():
    ct, mask = anatomy()
    with pytest.raises(ValueError, match="mask shape"):
        SliceViewer(ct, mask[:-1])


def test_window_explorer_presets_move_the_sliders():
    ct, _ = anatomy((40, 30, 12))
    explorer = WindowExplorer(ct.astype(np.float32), start=3, preset="liver")
    assert (explorer.width.value, explorer.level.value) == (150, 30)
    before = explorer.image.value
    explorer.preset.value = "abdomen_soft"
    assert (explorer.width.value, explorer.level.value) == (400, 50)
    assert explorer.image.value != before
    assert "W 400 / L 50" in explorer.caption.value
    np.testing.assert_array_equal(decode(explorer.image.value), explorer.render())


def test_figures_draw_and_save_atomically(tmp_path):
    ct, mask = anatomy((48, 40, 12))
    ct = ct.astype(np.float32)
    figs = {
        "overlay": figures.overlay_figure(ct, mask, key_slices(mask, 3), (0.8, 0.8, 2.5),
                                          title="t"),
        "windows": figures.window_comparison_figure(ct[:, :, 4]),
        "hist": figures.hu_histogram_figure(ct, mask),
        "freq": figures.freqhist_figure(ct[:, :, 4]),
        "chan": figures.channels_figure(np.random.default_rng(0).random((8, 8, 3)),
                                        ["a", "b", "c"]),
    }
    for name, fig in figs.items():
        path = figures.save_figure(fig, tmp_path / f"{name}.png")
        with Image.open(path) as im:
            assert im.size[0] > 300 and im.size[1] > 150
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{n}.png" for n in figs)


def test_label_colours_are_distinct():
    assert LABEL_COLORS[1] != LABEL_COLORS[2]


def predicted_like(mask):
    """A plausible wrong prediction: the liver shifted by two rows, the tumor missed."""
    pred = np.zeros_like(mask)
    pred[2:] = (mask[:-2] >= 1).astype(np.uint8)
    return pred


def test_prediction_viewer_shows_ct_reference_and_prediction_side_by_side():
    ct, mask = anatomy((40, 30, 12))
    ct = ct.astype(np.float32)
    pred = predicted_like(mask)
    viewer = PredictionViewer(ct, mask, pred, spacing=(0.8, 0.8, 2.5), start=4, width=200)
    gap = viewer.gap
    shown = decode(viewer.image.value)
    assert shown.dtype == np.uint8 and shown.shape == (40, 3 * 30 + 2 * gap, 3)
    np.testing.assert_array_equal(shown, viewer.render(4))
    ct_panel, ref_panel, pred_panel = (shown[:, i * (30 + gap):i * (30 + gap) + 30]
                                       for i in range(3))
    np.testing.assert_array_equal(ct_panel, render_slice(ct[:, :, 4], None, "abdomen_soft"))
    np.testing.assert_array_equal(ref_panel, render_slice(ct[:, :, 4], mask[:, :, 4],
                                                          "abdomen_soft"))
    np.testing.assert_array_equal(pred_panel, render_slice(ct[:, :, 4], pred[:, :, 4],
                                                           "abdomen_soft"))
    assert (shown[:, 30:30 + gap] == 255).all()  # white separators between the panels
    assert viewer.image.width == "600"
    assert all(t in viewer.header.value for t in ("CT", "reference", "prediction"))
    p, r = pred[:, :, 4] >= 1, mask[:, :, 4] >= 1
    liver = 2 * (p & r).sum() / (p.sum() + r.sum())
    assert 0 < liver < 1 and f"liver Dice {liver:.3f}" in viewer.caption.value
    assert "tumor Dice 0.000" in viewer.caption.value  # slice 4 has tumor, none predicted
    viewer.show(0)  # no liver or tumor in either mask: no score
    assert "liver Dice – " in viewer.caption.value and "tumor Dice – " in viewer.caption.value


def test_prediction_viewer_redraws_only_its_image_on_slider_moves():
    ct, mask = anatomy((40, 30, 12))
    ct = ct.astype(np.float32)
    viewer = PredictionViewer(ct, mask, predicted_like(mask), start=4)
    children = list(viewer.widget.children)
    header, first = viewer.header.value, viewer.image.value
    viewer.show(10)  # above the liver: nothing labelled on this slice
    assert viewer.image.value != first and list(viewer.widget.children) == children
    assert viewer.header.value == header
    np.testing.assert_array_equal(decode(viewer.image.value), viewer.render(10))
    assert "slice 10 of 11" in viewer.caption.value and "liver Dice –" in viewer.caption.value
    viewer.window.value = "liver"
    np.testing.assert_array_equal(decode(viewer.image.value)[:, :30],
                                  render_slice(ct[:, :, 10], None, "liver"))


def test_prediction_viewer_switches_between_models():
    ct, mask = anatomy((40, 30, 12))
    perfect, shifted = mask.copy(), predicted_like(mask)
    viewer = PredictionViewer(ct.astype(np.float32), mask,
                              {"unet": perfect, "resnet50_unet": shifted}, start=4)
    assert viewer.model.options == ("unet", "resnet50_unet")
    assert viewer.model.layout.display != "none"
    assert "liver Dice 1.000" in viewer.caption.value and "unet" in viewer.header.value
    panels = decode(viewer.image.value)
    viewer.model.value = "resnet50_unet"
    assert viewer.prediction is shifted and "resnet50_unet" in viewer.header.value
    after = decode(viewer.image.value)
    w = 30 + viewer.gap
    np.testing.assert_array_equal(after[:, :2 * w], panels[:, :2 * w])  # CT and reference stay
    assert (after[:, 2 * w:] != panels[:, 2 * w:]).any()
    assert "liver Dice 1.000" not in viewer.caption.value
    one = PredictionViewer(ct.astype(np.float32), mask, perfect)
    assert one.model.layout.display == "none"  # a single prediction needs no dropdown


def test_prediction_viewer_rejects_arrays_of_other_shapes():
    ct, mask = anatomy()
    with pytest.raises(ValueError, match="reference shape"):
        PredictionViewer(ct, mask[:-1], mask)
    with pytest.raises(ValueError, match="unet shape"):
        PredictionViewer(ct, mask, {"unet": mask[:, :-1]})
    with pytest.raises(ValueError, match="no prediction"):
        PredictionViewer(ct, mask, {})


def test_lesion_gallery_and_detection_figure_show_each_lesion_with_its_verdict(tmp_path):
    import pandas as pd

    from livertumor.evaluation import detect_lesions
    from livertumor.evaluation.lesions import detection_by_size
    from livertumor.viz.lesion_figures import detection_figure, gallery_lesions, lesion_gallery

    ct = np.full((90, 90, 8), 110.0, np.float32)
    truth = np.zeros(ct.shape, np.uint8)
    truth[10:80, 10:80, :] = 1
    truth[20:26, 20:26, 2:5] = 2   # found
    truth[50:64, 50:64, 2:6] = 2   # missed
    pred = truth.copy()
    pred[50:64, 50:64, 2:6] = 1
    pred[30:33, 60:63, 4] = 2      # false positive
    ct[truth == 2] = 40
    lesions = pd.DataFrame(detect_lesions(pred, truth, (1.0, 1.0, 2.0))["lesions"])
    lesions["case_id"] = 7
    shown = gallery_lesions(lesions)
    assert len(shown) == 3
    fig = lesion_gallery(shown, {7: (ct, truth, pred, (1.0, 1.0))}, spacing_mm=40)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert sorted(t.split("\n")[1] for t in titles) == ["false positive", "found", "missed"]
    path = figures.save_figure(fig, tmp_path / "gallery.png")
    assert path.stat().st_size > 5000
    fig = detection_figure({"a": detection_by_size(lesions), "b": detection_by_size(lesions)})
    assert figures.save_figure(fig, tmp_path / "detection.png").stat().st_size > 5000


def test_lesion_tables_of_several_cases_keep_their_types_when_a_case_has_none():
    """A test case without any lesion (reference or predicted) gives an empty table; concatenated
    with the others, ``detected`` must stay boolean or ``~detected`` turns into -1/-2."""
    import pandas as pd

    from livertumor.evaluation import detect_lesions
    from livertumor.evaluation.lesions import LESION_COLUMNS, lesion_table
    from livertumor.viz.lesion_figures import gallery_lesions

    truth = np.zeros((40, 40, 6), np.uint8)
    truth[5:35, 5:35] = 1
    empty = lesion_table(detect_lesions(truth, truth, (1.0, 1.0, 2.0))["lesions"])
    assert empty.empty and list(empty.columns) == list(LESION_COLUMNS)
    truth[10:16, 10:16, 2:4] = 2
    pred = truth.copy()
    pred[10:16, 10:16, 2:4] = 1
    some = lesion_table(detect_lesions(pred, truth, (1.0, 1.0, 2.0))["lesions"])
    both = pd.concat([some.assign(case_id=1), empty.assign(case_id=2)], ignore_index=True)
    assert both["detected"].dtype == bool
    shown = gallery_lesions(both)
    assert list(shown["kind"]) == ["reference"] and not shown["detected"].any()


def test_gallery_volumes_reads_each_shown_case_once_in_canonical_orientation(tmp_path):
    import pandas as pd

    from livertumor.viz.lesion_figures import gallery_volumes

    from conftest import SPACING, anatomy, write_case

    ct, mask = anatomy(seed=3)
    vpath, mpath = write_case(tmp_path, 5, ct, mask, axcodes=("R", "A", "S"))
    per_case = pd.DataFrame([{"case_id": 5, "volume_path": str(vpath), "mask_path": str(mpath),
                              "prediction_path": str(mpath)}])
    tiles = pd.DataFrame({"case_id": [5, 5]})
    volumes = gallery_volumes(tiles, per_case)
    assert list(volumes) == [5]
    image, truth, pred, spacing = volumes[5]
    np.testing.assert_array_equal(image, ct)
    np.testing.assert_array_equal(truth, mask)
    np.testing.assert_array_equal(pred, mask)
    assert spacing == pytest.approx(SPACING[:2])
