"""`python -m mlplane.cli`, the same as the `mlplane` command."""

from . import app

app(prog_name="mlplane")
