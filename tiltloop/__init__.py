"""tiltloop: online black-box optimization with diffusion priors (project-wide pieces).

The three rooms (``optimizer``, ``oracles``, ``storage``) share only this package: the version and
the one error base class, :class:`tiltloop.errors.TiltloopError`.
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tiltloop")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
