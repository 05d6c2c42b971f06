"""``python -m receiver.cli`` runs the ``nova-sink`` command line."""

from receiver.cli import main

main()
