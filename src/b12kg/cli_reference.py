"""The ``b12kg`` command line as a click command, for generated documentation (mkdocs-click renders
the site's command-line reference from it, so the reference cannot drift from the code)."""

from __future__ import annotations

import typer

from b12kg.cli import _with_metavars, app

command = typer.main.get_command(app)
_with_metavars(command)
