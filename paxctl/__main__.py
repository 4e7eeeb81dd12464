"""``python -m paxctl`` is the same as the ``paxctl`` command."""

from paxctl.cli.main import main

main()
