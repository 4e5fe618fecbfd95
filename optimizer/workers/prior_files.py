"""Ship a prior folder to Ray nodes that cannot read it (no shared filesystem assumed).

The driver reads a local prior folder once (:func:`pack_prior`: every file, size-limited) and
puts it in Ray's object store; each worker calls :func:`prior_path_on_this_node`, which uses the
original path when that folder holds the same files (same digest), and otherwise rebuilds the
folder under this node's temporary directory (once per node and digest; written to a scratch
folder and renamed, so concurrent workers never see half a folder). Bundled priors ship inside
the package and are not packed; nor is a folder when Ray has one node (``make_pool``).

    >>> packed = pack_prior("/models/my-ddpm")                 # doctest: +SKIP
    >>> ref = ray.put(packed)                                  # the driver, once
    >>> path, how = prior_path_on_this_node(packed)            # a worker: ("/tmp/...", "shipped")
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from optimizer.errors import PreflightError

#: The largest prior folder shipped through the object store; a larger one must be on a path
#: every node can read (a shared volume, or baked into the worker image).
MAX_SHIPPED_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PackedPrior:
    """A prior folder's files as bytes: ``path`` (the driver's), ``files`` (relative POSIX path
    → content), ``digest`` (sha256 over names and contents), ``nbytes`` (their total size)."""

    path: str
    files: dict[str, bytes]
    digest: str
    nbytes: int


def _digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for rel in sorted(files):
        h.update(rel.encode() + b"\0" + len(files[rel]).to_bytes(8, "little"))
        h.update(files[rel])
    return h.hexdigest()


def _read_folder(root: Path, limit: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        total += path.stat().st_size
        if total > limit:
            raise PreflightError(
                f"field `prior.name`: the prior folder {root} is larger than {limit / 1024**3:g} "
                "GiB, too large to ship to the Ray nodes through the object store; put it on a "
                "path every node can read (a shared volume or the worker image)")
        files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def pack_prior(name: str, *, limit: int = MAX_SHIPPED_BYTES) -> PackedPrior | None:
    """The files of prior ``name`` when it is a local folder; None for a bundled prior.

    Raises:
        PreflightError: the folder is larger than ``limit`` bytes.
        PriorError: ``name`` is neither a bundled prior nor a folder (as ``registry.resolve``).
    """
    from optimizer.priors.registry import resolve

    target = resolve(name)
    if not isinstance(target, Path):
        return None
    root = target.resolve()
    files = _read_folder(root, limit)
    return PackedPrior(path=str(root), files=files, digest=_digest(files),
                       nbytes=sum(len(b) for b in files.values()))


def _same_files(root: Path, packed: PackedPrior) -> bool:
    try:
        if not root.is_dir():
            return False
        return _digest(_read_folder(root, packed.nbytes + 1)) == packed.digest
    except (OSError, PreflightError):  # unreadable here, or it grew: not the driver's folder
        return False


def prior_path_on_this_node(packed: PackedPrior) -> tuple[str, str]:
    """A folder on this node with the packed prior's files, and how it was found: ``("PATH",
    "local")`` when the driver's path holds the same files here, else a folder rebuilt under
    this node's temporary directory, ``("PATH", "shipped")``."""
    original = Path(packed.path)
    if _same_files(original, packed):
        return str(original), "local"
    base = Path(tempfile.gettempdir()) / "tiltloop-priors"
    target = base / packed.digest[:32] / (original.name or "prior")
    if _same_files(target, packed):
        return str(target), "shipped"
    base.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".unpack-", dir=base))
    try:
        for rel, data in packed.files.items():
            dest = scratch / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a stale or half-copied folder from an earlier crash
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(scratch, target)
        except OSError:  # another worker on this node renamed its copy first
            if not _same_files(target, packed):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return str(target), "shipped"
