"""The SMC package's own errors (it imports only torch; ``optimizer.das`` maps them).

Messages name the option, its value and the remedy, like the rest of the project.
"""
from __future__ import annotations


class SMCError(ValueError):
    """Base class of every error raised by ``optimizer.smc``."""


class SMCConfigError(SMCError):
    """An SMC option is invalid: an unknown scheme or schedule name, a value out of range."""


class NonFiniteRewardError(SMCError):
    """The model's reward was NaN or infinite for some particle.

    Attributes:
        step: the first step with a non-finite reward (0 = the initial particles).
        group: the first such group at that step.
    """

    def __init__(self, step: int, group: int) -> None:
        self.step = step
        self.group = group
        super().__init__(
            f"the model's reward was NaN or infinite at step {step} (0 = initial particles) for "
            f"group {group}; the reward must be finite for every particle"
        )


def format_choice_error(field: str, value: object, valid: list[str] | tuple[str, ...]) -> str:
    """Message for an unknown name among a closed set of choices."""
    return f"{field}={value!r} is not a known choice; use one of: {', '.join(sorted(valid))}"
