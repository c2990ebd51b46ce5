"""``python -m cli`` runs the ``ingestd`` command."""

from cli.app import main

main()
