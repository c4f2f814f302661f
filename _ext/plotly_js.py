"""A Sphinx extension: plotly.js ships with the book and loads, once, on the pages that draw interactive figures.

The figures (``book/interactive.py``) are HTML outputs whose script calls ``Plotly``. The bundle comes from the
pinned Python package ``plotly`` (the version whose figures the pages write), is copied to
``_static/plotly/plotly.min.js`` and is added to a page's ``<head>`` only when the page holds such a figure: no CDN,
nothing for the other pages. Not in a folder named ``_static`` of the sources, for the reason MathJax is not
(``_config.yml``): Jupyter Book 1 would add it to every page.
"""

import shutil
from pathlib import Path

MARKER = 'class="bn-interactive"'   # book/interactive.py's MARKER
TARGET = "plotly/plotly.min.js"     # under _static/


def bundle():
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def add_plotly_where_needed(app, pagename, templatename, context, doctree):
    if MARKER in context.get("body", ""):
        app.add_js_file(TARGET)


def copy_bundle(app, exception):
    if exception is None and app.builder.format == "html":
        target = Path(app.outdir) / "_static" / TARGET
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle(), target)


def setup(app):
    if not bundle().is_file():
        raise FileNotFoundError(f"plotly.js is missing from the plotly package: {bundle()}")
    # before unique_scripts (priority 500), which rebuilds the page's script list
    app.connect("html-page-context", add_plotly_where_needed, priority=400)
    app.connect("build-finished", copy_bundle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
