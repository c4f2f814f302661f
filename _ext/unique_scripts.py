"""A Sphinx extension: each page lists every script once.

sphinx-thebe 0.3.1 adds its inline configuration (``const THEBE_JS_URL = ...``) on every
``env-before-read-docs``, which Jupyter Book 1 fires twice; the second copy throws
"Identifier 'THEBE_JS_URL' has already been declared" on every page.
"""


def unique_scripts(app, pagename, templatename, context, doctree):
    scripts, seen = [], set()
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (getattr(script, "filename", script) or "", attributes.get("body"))  # inline: None or ""
        if key not in seen:
            seen.add(key)
            scripts.append(script)
    context["script_files"] = scripts


def setup(app):
    app.connect("html-page-context", unique_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
