"""What a Pareto campaign adds to a round: the ParEGO weights of its SMC chunks.

With ``[surrogate] scalarization = "parego"`` each chunk of each round tilts the prior by an
augmented Chebyshev scalarization with its own weights, uniform on the simplex and a pure
function of (campaign seed, round, chunk, population tag) (``optimizer.surrogate.pareto``): one
round's chunks pull toward several directions of the front at once, and a resumed or redone
round draws the same weights. They are stored in the round summary (``parego_weights``).
"""
from __future__ import annotations

from typing import Any

from optimizer.surrogate.pareto import parego_weights


def chunk_weights(config: Any, round_index: int,
                  seed_tag: str | None = None) -> list[tuple[float, ...] | None]:
    """One weight tuple per chunk of round ``round_index`` (None per chunk unless ParEGO):
    ParEGO's simplex weights scaled so the largest is 1. A common factor leaves the augmented
    Chebyshev's maximizer unchanged, but on the simplex a skewed draw shrinks the scalarized
    range (to ~1/m of a balanced one's), so one α would barely tilt that chunk's target."""
    n = config.workers.num_chunks
    if config.surrogate.scalarization != "parego":
        return [None] * n
    return [scaled_weights(config, round_index, c, seed_tag) for c in range(n)]


def scaled_weights(config: Any, round_index: int, chunk: int,
                   seed_tag: str | None = None) -> tuple[float, ...]:
    """Chunk ``chunk``'s ParEGO draw for round ``round_index`` (campaign seed, one weight per
    objective), scaled so the largest is 1 (see :func:`chunk_weights`)."""
    w = parego_weights(config.seed, round_index, chunk, len(config.objectives), seed_tag)
    return tuple(x / max(w) for x in w)
