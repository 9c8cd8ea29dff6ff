"""audioqc: the command line and the package tying audiolib, tasks and flows together."""

from audiolib import __version__

__all__ = ["__version__"]
