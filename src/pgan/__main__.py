"""``python -m pgan`` (and ``torchrun -m pgan``): the ``pgan`` command."""

from pgan.cli import main

raise SystemExit(main())
