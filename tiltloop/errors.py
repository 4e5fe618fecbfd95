"""The one error base class of the project.

Every error tiltloop raises on purpose derives from :class:`TiltloopError` (through each room's own
base: ``OptimizerError``, ``OracleError``, ``StorageError``), so the CLI and the Python API catch one
class and print its message — which names the file, field or query and the remedy — with no
traceback.
"""
from __future__ import annotations


class TiltloopError(Exception):
    """Base class of every error tiltloop raises on purpose."""
