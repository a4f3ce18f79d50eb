"""Plots for notebooks and the CLI's ``--png`` options: every function returns a matplotlib
:class:`~matplotlib.figure.Figure` (no pyplot state, works under Agg and in Jupyter); save one
with :func:`save_png`.

- :mod:`~nasmed.viz.volume`: orthogonal slices with label overlays, modalities side by side;
  :mod:`~nasmed.viz.window`: CT window/level presets.
- :mod:`~nasmed.viz.genotype`: a genotype's cells drawn as graphs.
- :mod:`~nasmed.viz.search`: architecture-logit heatmaps over the search, its temperature,
  entropy and loss curves; :mod:`~nasmed.viz.curves`: learning curves from ``history.csv``.
- :mod:`~nasmed.viz.compare`: ``nasmed compare``'s Dice per network with its seed spread.
- :mod:`~nasmed.viz.pipeline`: a GPipe partition and each partition's cost.
- :mod:`~nasmed.viz.classify`: SAOL attention, the ALC curve, an augmentation-policy gallery.
- :mod:`~nasmed.viz.interactive`: sliders when ipywidgets is installed, static figures if not.

Names are imported lazily, so ``from nasmed.viz import plot_genotype`` does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "WINDOW_PRESETS",
    "AlphaSnapshot",
    "View",
    "WindowLevel",
    "alpha_viewer",
    "apply_window",
    "auto_window",
    "load_alpha_snapshots",
    "new_figure",
    "plot_alc",
    "plot_alpha_heatmaps",
    "plot_attention",
    "plot_balance",
    "plot_case",
    "plot_columns",
    "plot_compare",
    "plot_genotype",
    "plot_learning_curves",
    "plot_memory_comparison",
    "plot_modalities",
    "plot_orthogonal",
    "plot_policy_gallery",
    "plot_search_history",
    "resolve_window",
    "save_png",
    "slice_viewer",
    "widgets_available",
]

_WHERE = {
    "WINDOW_PRESETS": "window",
    "WindowLevel": "window",
    "apply_window": "window",
    "auto_window": "window",
    "resolve_window": "window",
    "View": "volume",
    "plot_case": "volume",
    "plot_modalities": "volume",
    "plot_orthogonal": "volume",
    "new_figure": "figure",
    "save_png": "figure",
    "plot_genotype": "genotype",
    "AlphaSnapshot": "search",
    "load_alpha_snapshots": "search",
    "plot_alpha_heatmaps": "search",
    "plot_search_history": "search",
    "plot_columns": "curves",
    "plot_compare": "compare",
    "plot_learning_curves": "curves",
    "plot_balance": "pipeline",
    "plot_memory_comparison": "pipeline",
    "plot_alc": "classify",
    "plot_attention": "classify",
    "plot_policy_gallery": "classify",
    "alpha_viewer": "interactive",
    "slice_viewer": "interactive",
    "widgets_available": "interactive",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nasmed.viz' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"nasmed.viz.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
