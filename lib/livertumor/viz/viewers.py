"""Interactive slice viewers for Jupyter (ipywidgets).

A slider move re-renders only the image: the slice is windowed and blended in numpy
(:func:`livertumor.viz.figures.render_slice`), encoded as PNG with Pillow and handed to an
``ipywidgets.Image``; no matplotlib figure is redrawn. A 512x512 slice takes a few
milliseconds, so scrolling stays fluid (``benchmarks/viewer_speed.py`` measures it). In a
headless run the widgets have no front end; the notebooks save static figures
(:mod:`livertumor.viz.figures`) for that case.

- :class:`SliceViewer`: CT with its mask overlaid, slice slider, window and mask opacity;
- :class:`WindowExplorer`: window width / level sliders with the standard windows as presets;
- :class:`PredictionViewer`: CT, reference and predicted masks side by side, one slice slider.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from PIL import Image

from ..data.volumes import LABELS
from ..data.windowing import WINDOWS, windowed
from .figures import LABEL_COLORS, render_slice


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode a uint8 (H, W) or (H, W, 3) image as PNG (fast settings: display, not storage)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def legend_html() -> str:
    """HTML swatches for the label colours."""
    items = []
    for label, (r, g, b) in LABEL_COLORS.items():
        items.append(
            f'<span style="display:inline-block;width:12px;height:12px;'
            f'background:rgb({r},{g},{b});margin:0 4px 0 12px;vertical-align:middle"></span>'
            f"{label} {LABELS[label]}")
    return "<span>0 background (no colour)</span>" + "".join(items)


def _area(spacing: Sequence[float] | None) -> tuple[float, str]:
    """Area of one in-plane pixel and its unit: (cm², "cm²") with a spacing, else (1, "px")."""
    if spacing is None:
        return 1.0, "px"
    return spacing[0] * spacing[1] / 100, "cm²"


def _position(k: int, n_slices: int, spacing: Sequence[float] | None) -> list[str]:
    """Caption parts saying where slice ``k`` is: its index and, with a spacing, z in mm."""
    parts = [f"slice {k} of {n_slices - 1} (0 = feet)"]
    if spacing is not None:
        parts.append(f"z = {k * spacing[2]:.1f} mm")
    return parts


class SliceViewer:
    """Scroll through the axial slices of a CT volume with its mask overlaid.

    Parameters
    ----------
    ct : ndarray, (rows, columns, slices), HU, canonical orientation
    mask : ndarray, same shape, uint8 labels, optional
    spacing : (row, column, slice) in mm, optional (captions show areas and z in mm)
    window : name from :data:`WINDOWS` shown first
    start : slice index shown first (default: the middle slice)
    width : displayed width in pixels

    Display the viewer as the last expression of a cell. ``viewer.show(k)`` moves the slider.
    """

    def __init__(self, ct: np.ndarray, mask: np.ndarray | None = None,
                 spacing: Sequence[float] | None = None, window: str = "abdomen_soft",
                 start: int | None = None, width: int = 512):
        import ipywidgets as w

        if mask is not None and mask.shape != ct.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the CT's {ct.shape}")
        self.ct, self.mask, self.spacing = ct, mask, spacing
        n = ct.shape[2]
        self.slider = w.IntSlider(value=n // 2 if start is None else int(start), min=0,
                                  max=n - 1, description="slice", continuous_update=True,
                                  layout=w.Layout(width=f"{max(width, 300)}px"))
        self.window = w.Dropdown(options=list(WINDOWS), value=window, description="window")
        self.overlay = w.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.1,
                                     description="mask", disabled=mask is None)
        self.image = w.Image(format="png", width=width)
        self.caption = w.HTML()
        controls = w.HBox([self.window, self.overlay])
        self.widget = w.VBox([self.slider, controls, self.image, self.caption,
                              w.HTML(legend_html() if mask is not None else "")])
        for control in (self.slider, self.window, self.overlay):
            control.observe(self._update, names="value")
        self._update()

    def render(self, k: int) -> np.ndarray:
        """The RGB image shown for slice ``k`` (uint8, (rows, columns, 3))."""
        m = None if self.mask is None else self.mask[:, :, k]
        return render_slice(self.ct[:, :, k], m, self.window.value, alpha=self.overlay.value)

    def _update(self, _change=None) -> None:
        k = self.slider.value
        self.image.value = png_bytes(self.render(k))
        parts = _position(k, self.ct.shape[2], self.spacing)
        if self.mask is not None:
            m = self.mask[:, :, k]
            px, unit = _area(self.spacing)
            parts.append(f"liver {(m >= 1).sum() * px:.1f} {unit}, "
                         f"tumor {(m == 2).sum() * px:.1f} {unit}")
        self.caption.value = " · ".join(parts)

    def show(self, k: int) -> None:
        """Move to slice ``k``."""
        self.slider.value = int(k)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class WindowExplorer:
    """Window width / level sliders with the standard windows as presets.

    Parameters
    ----------
    ct : ndarray, (rows, columns, slices), HU, canonical
    start : slice index shown first
    preset : name from :data:`WINDOWS` shown first
    """

    def __init__(self, ct: np.ndarray, start: int | None = None, preset: str = "liver",
                 width: int = 512):
        import ipywidgets as w

        self.ct = ct
        n = ct.shape[2]
        w0, l0 = WINDOWS[preset]
        self.preset = w.ToggleButtons(options=list(WINDOWS), value=preset,
                                      description="preset", style={"button_width": "116px"})
        self.width = w.IntSlider(value=int(w0), min=1, max=2500, step=1,
                                 description="width (HU)", continuous_update=True)
        self.level = w.IntSlider(value=int(l0), min=-1000, max=1000, step=1,
                                 description="level (HU)", continuous_update=True)
        self.slider = w.IntSlider(value=n // 2 if start is None else int(start), min=0,
                                  max=n - 1, description="slice", continuous_update=True)
        self.image = w.Image(format="png", width=width)
        self.caption = w.HTML()
        self.widget = w.VBox([self.preset, w.HBox([self.width, self.level]), self.slider,
                              self.image, self.caption])
        self.preset.observe(self._apply_preset, names="value")
        for control in (self.width, self.level, self.slider):
            control.observe(self._update, names="value")
        self._update()

    def _apply_preset(self, change) -> None:
        w0, l0 = WINDOWS[change["new"]]
        self.width.value, self.level.value = int(w0), int(l0)

    def render(self) -> np.ndarray:
        """The grey uint8 image currently shown, (rows, columns)."""
        img = windowed(self.ct[:, :, self.slider.value], self.width.value, self.level.value)
        return (img * 255 + 0.5).astype(np.uint8)

    def _update(self, _change=None) -> None:
        self.image.value = png_bytes(self.render())
        w_, l_ = self.width.value, self.level.value
        self.caption.value = (f"W {w_} / L {l_}: black at {l_ - w_ // 2} HU and below, white at "
                              f"{l_ + w_ // 2} HU and above")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


class PredictionViewer:
    """CT, reference mask and predicted mask side by side, scrolled with one slice slider.

    The three panels are one RGB image (one ``ipywidgets.Image``): the windowed CT alone, the
    CT with the reference labels, the CT with the predicted labels (colours of
    :data:`livertumor.viz.figures.LABEL_COLORS`). The caption gives this slice's liver and tumor
    Dice and areas, from :func:`livertumor.evaluation.per_slice.slice_scores` (computed once per
    prediction, the first time it is shown; "–" where the structure is in neither mask).

    Parameters
    ----------
    ct : ndarray, (rows, columns, slices), HU, canonical orientation
    truth : ndarray, same shape, uint8 labels (0, 1, 2): the reference
    predictions : ndarray, same shape, uint8 labels; or a mapping name -> such array (e.g. one
        per model), then a dropdown picks the one shown
    spacing : (row, column, slice) in mm, optional (captions show areas and z in mm)
    window : name from :data:`WINDOWS` shown first
    start : slice index shown first (default: the middle slice)
    width : displayed width of each panel in pixels

    Display the viewer as the last expression of a cell. ``viewer.show(k)`` moves the slider.
    """

    titles = ("CT", "reference", "prediction")

    def __init__(self, ct: np.ndarray, truth: np.ndarray,
                 predictions: np.ndarray | Mapping[str, np.ndarray],
                 spacing: Sequence[float] | None = None, window: str = "abdomen_soft",
                 start: int | None = None, width: int = 320):
        import ipywidgets as w

        if not isinstance(predictions, Mapping):
            predictions = {"prediction": predictions}
        if not predictions:
            raise ValueError("no prediction given")
        for name, arr in {"reference": truth, **predictions}.items():
            if arr.shape != ct.shape:
                raise ValueError(f"{name} shape {arr.shape} differs from the CT's {ct.shape}")
        self.ct, self.truth, self.spacing = ct, truth, spacing
        self.predictions = dict(predictions)
        self._scores: dict[str, dict] = {}
        n = ct.shape[2]
        self.gap = max(2, ct.shape[1] // 64)
        self.slider = w.IntSlider(value=n // 2 if start is None else int(start), min=0,
                                  max=n - 1, description="slice", continuous_update=True,
                                  layout=w.Layout(width=f"{max(3 * width, 300)}px"))
        self.window = w.Dropdown(options=list(WINDOWS), value=window, description="window")
        names = list(self.predictions)
        self.model = w.Dropdown(options=names, value=names[0], description="prediction",
                                layout=w.Layout(display="" if len(names) > 1 else "none"))
        self.image = w.Image(format="png", width=3 * width)
        self.header = w.HTML()
        self.caption = w.HTML()
        self.widget = w.VBox([self.slider, w.HBox([self.window, self.model]), self.header,
                              self.image, self.caption, w.HTML(legend_html())])
        self._header_width = 3 * width
        for control in (self.slider, self.window, self.model):
            control.observe(self._update, names="value")
        self.model.observe(self._update_header, names="value")
        self._update_header()
        self._update()

    @property
    def prediction(self) -> np.ndarray:
        """The predicted label volume currently shown."""
        return self.predictions[self.model.value]

    def panel_images(self, k: int) -> list[np.ndarray]:
        """The three panels of slice ``k``: uint8 RGB, each (rows, columns, 3)."""
        hu = self.ct[:, :, k]
        window = self.window.value
        return [render_slice(hu, None, window), render_slice(hu, self.truth[:, :, k], window),
                render_slice(hu, self.prediction[:, :, k], window)]

    def render(self, k: int) -> np.ndarray:
        """The image shown for slice ``k``: the panels left to right, separated by white
        columns of :attr:`gap` pixels; uint8, (rows, 3 * columns + 2 * gap, 3)."""
        panels = self.panel_images(k)
        sep = np.full((panels[0].shape[0], self.gap, 3), 255, np.uint8)
        return np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)

    def _update_header(self, _change=None) -> None:
        label = self.model.value if len(self.predictions) > 1 else self.titles[2]
        spans = "".join(f'<span style="flex:1;text-align:center">{t}</span>'
                        for t in (*self.titles[:2], label))
        self.header.value = f'<div style="display:flex;width:{self._header_width}px">{spans}</div>'

    def _update(self, _change=None) -> None:
        k = self.slider.value
        self.image.value = png_bytes(self.render(k))
        px, unit = _area(self.spacing)
        parts = _position(k, self.ct.shape[2], self.spacing)
        for name, table in self.slice_scores().items():
            d = table["dice"][k]
            score = "–" if np.isnan(d) else f"{d:.3f}"
            parts.append(f"{name} Dice {score} (reference {table['ref_pixels'][k] * px:.1f} "
                         f"{unit}, predicted {table['pred_pixels'][k] * px:.1f} {unit})")
        self.caption.value = " · ".join(parts)

    def slice_scores(self) -> dict[str, dict[str, np.ndarray]]:
        """Per-slice scores of the prediction shown: structure -> column -> (slices,) array
        (columns of :func:`livertumor.evaluation.per_slice.slice_scores`)."""
        name = self.model.value
        if name not in self._scores:
            from ..evaluation import slice_scores

            table = slice_scores(self.predictions[name], self.truth)
            self._scores[name] = {
                s: {c: rows[c].to_numpy() for c in ("dice", "ref_pixels", "pred_pixels")}
                for s, rows in table.groupby("structure", sort=False)}
        return self._scores[name]

    def show(self, k: int) -> None:
        """Move to slice ``k``."""
        self.slider.value = int(k)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def live_curves():
    """A Keras callback that redraws the training curves in the notebook after every epoch.

    The figure lives in one IPython display handle that is updated in place, so the notebook
    keeps a single, current plot (in a headless run, the last one is stored).
    """
    import keras
    import matplotlib.pyplot as plt
    import pandas as pd
    from IPython.display import display

    from .figures import history_figure

    class LiveCurves(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.rows: list[dict] = []
            self.handle = None

        def on_epoch_end(self, epoch, logs=None):
            self.rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
            fig = history_figure(pd.DataFrame(self.rows), title=f"after epoch {epoch + 1}")
            if self.handle is None:
                self.handle = display(fig, display_id=True)
            else:
                self.handle.update(fig)
            plt.close(fig)

    return LiveCurves()
