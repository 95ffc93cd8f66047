"""``python -m pgan ...`` (also what ``torchrun -m pgan train ...`` runs)."""

from pgan.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
