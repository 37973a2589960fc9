"""``python -m receipt_printer``: the technician CLI."""

from receipt_printer.cli import main

main()
