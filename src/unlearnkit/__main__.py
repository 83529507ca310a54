"""``python -m unlearnkit`` runs the command line."""

from unlearnkit.cli import main

main()
