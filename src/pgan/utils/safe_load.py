"""Loading ``.pt`` files without running code from them.

``torch.load(weights_only=True)`` unpickles tensors, plain containers and
numbers only, so a crafted file cannot execute anything while it loads. Files
written before pgan stored its RNG states as plain types (numpy / Python RNG
tuples) need the full unpickler; that is an explicit opt-in (``trust=True``,
``pgan --trust-checkpoint``, or ``PGAN_TRUST_CHECKPOINT=1``) and logs a warning.

:func:`pgan.models.trained.load_checkpoint` is the loader for training
checkpoints; the part detector's checkpoints go through the same function here.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

from pgan.errors import PganError

__all__ = ["TRUST_ENV", "safe_torch_load", "trust_from_env"]

log = logging.getLogger(__name__)

TRUST_ENV = "PGAN_TRUST_CHECKPOINT"


def trust_from_env() -> bool:
    """True when ``PGAN_TRUST_CHECKPOINT`` is set to 1/true/yes."""
    return os.environ.get(TRUST_ENV, "").strip().lower() in ("1", "true", "yes")


def safe_torch_load(path: str | Path, trust: bool | None = None, what: str = "checkpoint") -> Any:
    """``torch.load`` on CPU that never runs code from ``path`` unless ``trust`` (or the env opt-in).

    Raises :class:`PganError` (one line) for a missing, truncated or foreign file, and for a
    file that needs the full unpickler without the opt-in.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise PganError(f"{what} {path} does not exist")
    trust = trust_from_env() if trust is None else trust
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing; the error says it
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is None:
            raise PganError(f"cannot read {what} {path}: not a PyTorch checkpoint, or a damaged one") from None
    except Exception as exc:  # a truncated or foreign file fails in many ways
        raise PganError(f"cannot read {what} {path}: {type(exc).__name__}: {_first_line(exc)}") from None
    if not trust:
        raise PganError(f"{what} {path} holds Python objects beyond tensors ({refused}; an old pgan format or a "
                        f"foreign file), and loading it could run code from it: if you trust its source, "
                        f"pass --trust-checkpoint (or set {TRUST_ENV}=1, or trust=True)")
    log.warning("loading %s %s with the full unpickler (trusted by the user): it can run code", what, path)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise PganError(f"cannot read {what} {path}: {type(exc).__name__}: {_first_line(exc)}") from None


def _refused_global(exc: Exception) -> str | None:
    """The global ``weights_only`` refused (e.g. ``numpy...._reconstruct``); None for a damaged or foreign file."""
    m = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
    return m.group(1) if m else None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
