// Draws the book's interactive figures (book/interactive.py) with plotly.js, in the reader's browser.
//
// Each figure is a <div class="bn-interactive"> followed by its specification, a <script type="application/json">:
// the Plotly figure, one frame per combination of the controls' values (precomputed by the page's code) and the
// controls (sliders, rows of buttons). Plotly's sliders and buttons keep their `active` index in the layout; their
// own method is "skip", so moving one only makes this script draw the frame of the new combination (Plotly.update).
// _ext/plotly_js.py adds plotly.js and this file, deferred and in this order, to the pages that hold a figure.
(function () {
  "use strict";
  window.bnInteractive = {};

  function frameIndex(gd, controls) {
    var at = 0, slider = 0, menu = 0;
    controls.forEach(function (control) {
      var opts = control.kind === "slider" ? gd.layout.sliders[slider++] : gd.layout.updatemenus[menu++];
      at = at * control.size + (opts.active || 0);
    });
    return at;
  }

  function draw(node, spec) {
    node.textContent = "";
    // No mode bar (it would cover the legends); a 3-D scene still rotates by dragging and zooms by scrolling.
    Plotly.newPlot(node, spec.data, spec.layout, {responsive: true, displayModeBar: false}).then(function (gd) {
      function show() {
        // One Plotly.update: restyle the frame's traces (axes on autorange follow the new data), relayout the rest.
        var frame = spec.frames[frameIndex(gd, spec.controls)], update = {};
        frame.data.forEach(function (data) {
          Object.keys(data).forEach(function (key) { update[key] = []; });
        });
        Object.keys(update).forEach(function (key) {
          update[key] = frame.data.map(function (data, n) {
            return key in data ? data[key] : gd.data[frame.traces[n]][key];
          });
        });
        return Plotly.update(gd, update, frame.layout, frame.traces);
      }
      gd.on("plotly_sliderchange", show);
      gd.on("plotly_buttonclicked", show);
      window.bnInteractive[node.id] = {frames: spec.frames.length,
                                       index: function () { return frameIndex(gd, spec.controls); }};
    });
  }

  function drawAll() {
    document.querySelectorAll("script.bn-interactive-spec").forEach(function (script) {
      draw(document.getElementById(script.dataset.for), JSON.parse(script.textContent));
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", drawAll);
  } else {
    drawAll();
  }
})();
