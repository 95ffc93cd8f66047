"""User-facing errors.

A :class:`PganError` is raised for anything the user can fix (a missing folder,
a malformed file, an unknown name). The CLI prints its message as one line and
exits with status 2; tracebacks are reserved for bugs.
"""

__all__ = ["IndexMismatchError", "NotAnImageError", "PganError", "StaleVectorsError", "unknown_name"]


class PganError(Exception):
    """An error caused by user input; its message names the file or key at fault."""


def unknown_name(kind: str, name: str, valid: "list[str] | tuple[str, ...]") -> PganError:
    """The error for a registry miss: names the valid choices."""
    return PganError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(valid))}")


class IndexMismatchError(PganError):
    """A gallery index and a model (or query embeddings) that do not belong together:
    the embedding size or the model fingerprint differs."""


class NotAnImageError(PganError):
    """An input that cannot be decoded as an image (corrupt, zero-byte, another file type)."""


class StaleVectorsError(PganError):
    """A gallery index's faiss file that was not derived from its database as it is now (another build,
    another model, rows removed) or whose derivation record is missing: it is rebuilt or refused, never
    searched."""
