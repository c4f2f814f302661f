"""A Sphinx extension: launch buttons (Colab, JupyterHub, Binder) only on the pages where they work.

sphinx-book-theme 1.3.0 adds them to every page it takes for a notebook, a MyST
Markdown page with a kernel included, and points them at that page's source
file: on a chapter page, ``book/NN_slug.md``, which Colab cannot open. Its
``launch_buttons`` options hold no per-page switch, so this removes the theme's
launch group (label ``launch-buttons``) from every page whose name matches no
pattern of ``launch_button_pages`` (fnmatch patterns of page names, set in
``_config.yml``; the exercise notebooks). The download buttons stay.
"""

from fnmatch import fnmatch

THEME_GROUP = "launch-buttons"   # sphinx_book_theme/header_buttons/launch.py


def launches(app, pagename):
    return any(fnmatch(pagename, pattern) for pattern in app.config.launch_button_pages)


def drop_launch_buttons(app, pagename, templatename, context, doctree):
    if not launches(app, pagename) and "header_buttons" in context:
        context["header_buttons"] = [button for button in context["header_buttons"]
                                     if button.get("label") != THEME_GROUP]


def setup(app):
    app.add_config_value("launch_button_pages", [], "html")
    # after the theme's add_launch_buttons (priority 501)
    app.connect("html-page-context", drop_launch_buttons, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
