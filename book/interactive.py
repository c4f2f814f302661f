"""Interactive figures that work in the published HTML book, where no kernel runs.

A page builds a Plotly figure (its traces styled, their data left to the frames), names its controls (sliders or a
row of buttons, each over a list of values) and gives a function that computes, with the page's own code, what the
figure shows at one setting of every control. ``controlled_figure`` calls that function at every combination of the
values, ahead of time, and IPython's ``display`` writes the figure as HTML: a <div> and the figure's data (JSON).
In the reader's browser, ``_ext/bn_interactive.js`` draws it with plotly.js, and moving a control draws the
precomputed frame of the new combination. Nothing is computed in JavaScript and no kernel is needed; the book ships
plotly.js and that script itself (``_ext/plotly_js.py``), so the page works offline. The executed pages are cached
(``_build/.jupyter_cache``) with data only: a change to the drawing script needs no re-execution.

In Jupyter the page's ipywidgets demo is the interactive version; this figure then shows a note instead.
"""

import itertools
import json
import uuid
from dataclasses import dataclass, field

import numpy as np

MARKER = "bn-interactive"   # the class of every figure's <div>; _ext/plotly_js.py looks for it
DIGITS = 5                  # significant digits kept in the page (the drawing needs no more)


@dataclass
class Control:
    """One slider, or one row of buttons (``kind="buttons"``), over ``values``; ``name`` is the argument of the
    frame function, ``title`` what the reader sees (the name by default)."""
    name: str
    values: list
    labels: list = None
    initial: object = None
    kind: str = "slider"
    title: str = None

    def __post_init__(self):
        self.values = list(self.values)
        self.labels = [str(v) for v in self.values] if self.labels is None else list(self.labels)
        self.initial = self.values[0] if self.initial is None else self.initial
        self.title = self.name if self.title is None else self.title
        if self.kind not in ("slider", "buttons") or len(self.labels) != len(self.values):
            raise ValueError(f"control {self.name}: kind {self.kind!r}, {len(self.values)} values, "
                             f"{len(self.labels)} labels")


@dataclass
class Frame:
    """What one setting of the controls draws: new data for the traces numbered ``traces``, and layout changes."""
    data: list
    traces: list
    layout: dict = field(default_factory=dict)


def _plain(value):
    """JSON-ready, arrays as lists of numbers rounded to DIGITS significant digits."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.{DIGITS}g}") if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


class ControlledFigure:
    """A Plotly figure with controls over precomputed frames; IPython's ``display(figure)`` shows it."""

    def __init__(self, figure, controls, frames, height):
        self.figure, self.controls, self.frames, self.height = figure, controls, frames, height
        self.id = f"{MARKER}-{uuid.uuid4().hex[:8]}"

    def frame_at(self, **setting):
        """The frame drawn when each named control shows the given value."""
        index = 0
        for control in self.controls:
            index = index * len(control.values) + control.values.index(setting[control.name])
        return self.frames[index]

    def spec(self):
        figure = self.figure.to_plotly_json()
        return {"data": _plain(figure["data"]), "layout": _plain(figure["layout"]),
                "frames": [_plain({"data": f.data, "traces": f.traces, "layout": f.layout}) for f in self.frames],
                "controls": [{"kind": c.kind, "size": len(c.values)} for c in self.controls]}

    def html(self):
        """The figure's <div> (a note until plotly.js draws in it) and its specification, which the book's
        _ext/bn_interactive.js draws; nothing here runs in Jupyter."""
        spec = json.dumps(self.spec(), separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
        return (f'<div id="{self.id}" class="{MARKER}" style="width:100%;height:{self.height}px">'
                f"<p>(An interactive figure, drawn by plotly.js in the HTML book. In Jupyter, use the widget.)</p>"
                f"</div>\n"
                f'<script type="application/json" class="{MARKER}-spec" data-for="{self.id}">{spec}</script>')

    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": self.html(), "text/plain": f"<interactive figure: {len(self.frames)} frames>"}


def controlled_figure(figure, controls, frame, height=480):
    """Precompute ``frame(**setting)`` (a Frame) at every combination of the controls' values and attach the
    controls to ``figure`` (a plotly.graph_objects.Figure whose traces the frames fill in).

    Sliders are stacked under the plot, rows of buttons above it; the figure starts at every control's initial value.
    """
    controls = list(controls)
    frames = [frame(**dict(zip((c.name for c in controls), values)))
              for values in itertools.product(*(c.values for c in controls))]
    sliders, menus = [], []
    slider_count = sum(c.kind == "slider" for c in controls)
    menu_count = len(controls) - slider_count
    top, bottom = 60 + 40 * menu_count, 60 + 80 * slider_count     # pixels for the titles, axes and controls
    plot_height = height - top - bottom
    for control in controls:
        active = control.values.index(control.initial)
        steps = [{"label": label, "method": "skip", "args": []} for label in control.labels]
        if control.kind == "slider":
            sliders.append({"active": active, "steps": steps, "x": 0.0, "len": 1.0, "xanchor": "left",
                            "y": -(55 + 80 * len(sliders)) / plot_height, "yanchor": "top",
                            "pad": {"t": 0, "b": 0, "l": 0, "r": 0}, "ticklen": 3, "font": {"size": 10},
                            "currentvalue": {"prefix": f"{control.title} = ", "font": {"size": 13}}})
        else:
            menus.append({"type": "buttons", "direction": "right", "active": active, "buttons": steps,
                          "showactive": True, "x": 0.0, "xanchor": "left",
                          "y": 1 + (10 + 40 * len(menus)) / plot_height, "yanchor": "bottom",
                          "pad": {"r": 4, "t": 0}})
    figure.update_layout(height=height, margin={"t": top, "b": bottom})
    figure.update_layout(sliders=sliders, updatemenus=menus)
    result = ControlledFigure(figure, controls, frames, height)
    start = result.frame_at(**{c.name: c.initial for c in controls})
    for number, data in zip(start.traces, start.data):
        figure.data[number].update(data)
    figure.update_layout(start.layout)
    return result
