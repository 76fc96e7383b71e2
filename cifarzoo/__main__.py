"""``python -m cifarzoo`` runs the CLI."""

from cifarzoo.cli import main

main()
