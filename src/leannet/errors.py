"""The one exception type users see: a clear, one-line message about bad input."""


class LeannetError(ValueError):
    """Bad input or an impossible request; the CLI prints its message on one line and exits 2."""


class UnreachableTarget(LeannetError):
    """A pruning target that the floors, protected channels or per-layer limits rule out."""
