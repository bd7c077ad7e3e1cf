"""``python -m gateway`` runs the CLI (same as the ``llm-gateway`` console script)."""

from gateway.cli.commands import main

main()
