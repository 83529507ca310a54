"""``python -m unlearnkit`` runs the command line."""

from unlearnkit.cli import app

app(prog_name="unlearnkit")
