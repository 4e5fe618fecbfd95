"""Checks on training data, with errors that name the row and the remedy; data fingerprints."""
from __future__ import annotations

import hashlib

import torch
from torch import Tensor

from optimizer.errors import SurrogateError


def _bad_rows(T: Tensor) -> list[int]:
    flat = T.reshape(T.shape[0], -1)
    return torch.nonzero(~torch.isfinite(flat).all(dim=1)).flatten().tolist()


def _rows_text(rows: list[int]) -> str:
    shown = ", ".join(str(r) for r in rows[:10])
    return f"row {shown}" if len(rows) == 1 else f"rows {shown}" + (" ..." if len(rows) > 10 else "")


def check_training_data(
    X: Tensor, Y: Tensor, Yvar: Tensor | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Validate `n x *design_shape` designs, `n x m` outcomes and optional `n x m` noise.

    A 1-dim ``Y`` (or ``Yvar``) of length `n` is read as one objective. Raises ``SurrogateError``
    naming the first offending rows: non-finite values are failed queries and must be left out
    (the campaign records them as failed), negative variances are a malformed oracle reply.
    """
    if not isinstance(X, Tensor) or not isinstance(Y, Tensor):
        raise SurrogateError("X and Y must be torch Tensors (designs `n x *design_shape`, Y `n x m`)")
    if Y.dim() == 1:
        Y = Y.unsqueeze(-1)
    if Yvar is not None and Yvar.dim() == 1:
        Yvar = Yvar.unsqueeze(-1)
    if X.dim() < 2:
        raise SurrogateError(
            f"X has shape {tuple(X.shape)}; expected `n x *design_shape` (one row per observation)"
        )
    if Y.dim() != 2 or Y.shape[0] != X.shape[0]:
        raise SurrogateError(
            f"Y has shape {tuple(Y.shape)} but X has {X.shape[0]} rows; Y must be `n x m` with "
            "one row per design"
        )
    if X.shape[0] == 0:
        raise SurrogateError("no observations (n=0): the surrogate needs at least one result; "
                             "sample the plain prior for the first round instead")
    if Yvar is not None and Yvar.shape != Y.shape:
        raise SurrogateError(
            f"Yvar has shape {tuple(Yvar.shape)} but Y has {tuple(Y.shape)}; pass one noise "
            "variance per outcome, or Yvar=None to infer the noise"
        )
    for name, T in (("X", X), ("Y", Y), ("Yvar", Yvar)):
        if T is None:
            continue
        rows = _bad_rows(T)
        if rows:
            raise SurrogateError(
                f"{name} has NaN or infinite values in {_rows_text(rows)}; drop those "
                "observations (mark the queries failed) before fitting the surrogate"
            )
    if Yvar is not None and (Yvar < 0).any():
        rows = torch.nonzero((Yvar < 0).any(dim=1)).flatten().tolist()
        raise SurrogateError(
            f"Yvar has negative noise variances in {_rows_text(rows)}; a variance must be >= 0 "
            "(did the oracle report a standard deviation with a sign, or a log-variance?)"
        )
    return X, Y, Yvar


def fingerprint(X: Tensor, Y: Tensor, Yvar: Tensor | None) -> str:
    """SHA-256 of the training data (float64, C order), to check a state is rebuilt on its data."""
    h = hashlib.sha256()
    for T in (X, Y, Yvar):
        if T is None:
            h.update(b"none")
            continue
        a = T.detach().to("cpu", torch.float64).contiguous()
        h.update(str(tuple(a.shape)).encode())
        h.update(a.numpy().tobytes())
    return h.hexdigest()
