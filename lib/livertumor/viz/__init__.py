"""Pictures: static matplotlib figures (:mod:`.figures`) and the ipywidgets viewers
(:mod:`.viewers`: slice scroller, window/level explorer, prediction viewer)."""

from . import figures
from .figures import save_figure

__all__ = ["figures", "save_figure"]
