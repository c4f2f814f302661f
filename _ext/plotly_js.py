"""A Sphinx extension: the book's interactive figures work offline, on the pages that hold one.

The figures (``book/interactive.py``) are a <div> and their data; ``_ext/bn_interactive.js`` draws them with
plotly.js. Both scripts ship with the book, in ``_static/plotly/``: plotly.js from the pinned Python package
``plotly`` (the version whose figures the pages write), so no CDN is needed. They are added, deferred, once, to the
pages that hold a figure, and to no other page. Not in a folder named ``_static`` of the sources, for the reason
MathJax is not (``_config.yml``): Jupyter Book 1 would add them to every page.
"""

import shutil
from pathlib import Path

MARKER = 'class="bn-interactive"'   # book/interactive.py's MARKER
SCRIPTS = {"plotly/plotly.min.js": None, "plotly/bn_interactive.js": Path(__file__).with_name("bn_interactive.js")}


def plotly_bundle():
    import plotly
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def add_scripts_where_needed(app, pagename, templatename, context, doctree):
    if MARKER in context.get("body", ""):
        for name in SCRIPTS:               # deferred scripts run in document order: plotly.js first
            app.add_js_file(name, loading_method="defer")


def copy_scripts(app, exception):
    if exception is None and app.builder.format == "html":
        for name, source in SCRIPTS.items():
            target = Path(app.outdir) / "_static" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source or plotly_bundle(), target)


def setup(app):
    if not plotly_bundle().is_file():
        raise FileNotFoundError(f"plotly.js is missing from the plotly package: {plotly_bundle()}")
    # before unique_scripts (priority 500), which rebuilds the page's script list
    app.connect("html-page-context", add_scripts_where_needed, priority=400)
    app.connect("build-finished", copy_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
