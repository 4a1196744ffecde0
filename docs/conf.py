"""Sphinx configuration of pyteleport's documentation.

Build it with ``python3 -m nox -s docs`` (warnings are errors), or by hand:
``sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""
import os
import sys

# document the checkout's code, whatever pyteleport the environment holds
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import pyteleport  # noqa: E402

project = "pyteleport"
author = "the pyteleport developers"
copyright = "the pyteleport developers"
version = release = pyteleport.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# "#module-state" style anchors for the headings of every page (h1-h3), so
# that pages can link to a section of another: [Module state](guide.md#module-state)
myst_heading_anchors = 3

# signatures as written: the annotations of the public calls name types
# that are imported for type checkers only
autodoc_typehints = "signature"
autodoc_member_order = "bysource"

html_theme = "alabaster"
html_title = f"pyteleport {release}"
