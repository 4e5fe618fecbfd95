"""An image scorer for `8 x 8` digit images: how strongly an image reads as a target digit.

At construction a multinomial logistic regression is trained on scikit-learn's bundled
``load_digits`` (1,797 images, pixels scaled from 0..16 to `[0, 1]`) — a second on a CPU, no
download. A design is an `8 x 8` (or `64`) array of pixel intensities in `[0, 1]` — or in
`[-1, 1]` with ``pixel_range="signed"``, the space of the bundled ``digits`` diffusion prior;
values outside are clipped (diffusion samples overshoot a little). The objective, maximized, is
one of (``output``):

* ``"p"``: `p(target | image)`;
* ``"log_p"``: `log p(target | image)`;
* ``"log_odds"``: `log p(target | image) − log(1 − p(target | image))` — unlike `p`, it does not
  saturate on clean digits, so it still ranks the best ones.

A logistic regression is linear in the pixels, so on its own it rewards images no lab could
make: high-contrast patterns far from every digit score higher than any real one. A real
campaign's oracle is only meaningful on valid designs, so ``off_data_penalty = w > 0`` subtracts
`w · max(0, d(x) − r)²`, where `d(x)` is the Euclidean distance (in `[0, 1]` pixels) from the
image to the nearest training image and the radius `r` defaults to the 95% quantile of that
distance for the training images themselves (leave-one-out): 95% of real digits are inside
the radius and pay nothing.

>>> oracle = DigitScorerOracle(target_digit=3, seed=0)
>>> oracle.score(oracle.example_image(3))["p_target"] > 0.9
True
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from oracles.errors import OracleConfigError
from oracles.simulated.base import SimulatedOracle

OUTPUTS = ("p", "log_p", "log_odds")


class DigitScorerOracle(SimulatedOracle):
    """Scores `8 x 8` images by a seeded classifier's belief in ``target_digit``.

    Args:
        target_digit: the digit 0..9 the objective is about.
        output: ``"p"``, ``"log_p"`` or ``"log_odds"`` (see the module docstring).
        log_prob: shorthand for ``output="log_p"`` (kept for existing configs).
        objective: name of the single objective.
        train_fraction: fraction of ``load_digits`` used for training (a seeded subsample).
        pixel_range: ``"unit"`` for designs in `[0, 1]`; ``"signed"`` for designs in `[-1, 1]`
            (the bundled digits prior's output), mapped by `(x + 1) / 2` before scoring.
        off_data_penalty: weight `w ≥ 0` of the off-data penalty (0: none).
        off_data_radius: radius `r`; None: the 95% leave-one-out nearest-neighbour distance of
            the training images.
        latency_s, noise_std, failure_rate, seed: see :class:`SimulatedOracle`.
    """

    def __init__(self, target_digit: int = 3, *, output: Literal["p", "log_p", "log_odds"] = "p",
                 log_prob: bool = False, objective: str = "p_target", train_fraction: float = 1.0,
                 pixel_range: str = "unit", off_data_penalty: float = 0.0,
                 off_data_radius: float | None = None, latency_s: float = 0.0,
                 noise_std: float = 0.0, failure_rate: float = 0.0, seed: int = 0) -> None:
        if not 0 <= int(target_digit) <= 9:
            raise OracleConfigError(f"target_digit must be 0..9, got {target_digit}")
        if not 0.1 <= train_fraction <= 1.0:
            raise OracleConfigError(f"train_fraction must be in [0.1, 1], got {train_fraction}")
        if pixel_range not in ("unit", "signed"):
            raise OracleConfigError(
                f"pixel_range must be 'unit' ([0, 1] pixels) or 'signed' ([-1, 1], the bundled "
                f"digits prior), got {pixel_range!r}")
        if output not in OUTPUTS:
            raise OracleConfigError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
        if log_prob and output != "p":
            raise OracleConfigError(f"log_prob=True contradicts output={output!r}; give only output")
        if not off_data_penalty >= 0:
            raise OracleConfigError(f"off_data_penalty must be >= 0, got {off_data_penalty}")
        if off_data_radius is not None and not off_data_radius > 0:
            raise OracleConfigError(f"off_data_radius must be > 0, got {off_data_radius}")
        self.pixel_range = pixel_range
        self.target_digit = int(target_digit)
        self.output = "log_p" if log_prob else output
        self.objectives = (objective,)
        data = load_digits()
        images = data.images.astype(np.float64) / 16.0
        rng = np.random.default_rng(seed)
        keep = rng.permutation(len(images))[: max(100, int(train_fraction * len(images)))]
        self._images, self._labels = images, data.target
        self.classifier = LogisticRegression(max_iter=500, C=1.0, random_state=seed)
        # one BLAS thread: on a shared CPU a thread pool makes this tiny fit 50x slower
        with threadpool_limits(limits=1):
            self.classifier.fit(images[keep].reshape(len(keep), 64), data.target[keep])
        self._coef = self.classifier.coef_.astype(np.float64)
        self._intercept = self.classifier.intercept_.astype(np.float64)
        self._target_row = list(self.classifier.classes_).index(self.target_digit)
        self.off_data_penalty = float(off_data_penalty)
        self._train = images[keep].reshape(len(keep), 64)
        self._train_sq = (self._train ** 2).sum(1)
        self.off_data_radius = (float(off_data_radius) if off_data_radius is not None
                                else float(np.quantile(self._leave_one_out_distances(), 0.95)))
        super().__init__(latency_s=latency_s, noise_std=noise_std, failure_rate=failure_rate,
                         seed=seed, name=f"digit{self.target_digit}")

    @classmethod
    def lab(cls, target_digit: int = 3, **kwargs: object) -> DigitScorerOracle:
        """The digits problem of the demo and the campaign benchmark: log-odds of
        ``target_digit`` for the bundled prior's `[-1, 1]` images, with the off-data penalty
        `25 · max(0, d − r)²` (the manifold oracle's weight). ``kwargs`` go to the constructor."""
        settings = dict(output="log_odds", pixel_range="signed", off_data_penalty=25.0)
        return cls(target_digit, **{**settings, **kwargs})  # type: ignore[arg-type]

    def example_image(self, digit: int, index: int = 0) -> np.ndarray:
        """The ``index``-th bundled `8 x 8` image of ``digit``, pixels in `[0, 1]`."""
        return self._images[np.flatnonzero(self._labels == digit)[index]].copy()

    @property
    def design_shape(self) -> tuple[int, ...]:
        """``(1, 8, 8)``, the bundled digits prior's shape (``(8, 8)`` and ``(64,)`` are
        accepted too)."""
        return (1, 8, 8)

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.size != 64 or design.shape not in ((8, 8), (64,), (1, 8, 8)):
            raise ValueError(f"design must have shape (1, 8, 8), an 8x8 image ((8, 8) and (64,) "
                             f"are accepted too), got shape {design.shape}")
        pixels = design.reshape(64)
        if self.pixel_range == "signed":
            pixels = (pixels + 1.0) / 2.0
        return np.clip(pixels, 0.0, 1.0)

    def data_distance(self, pixels: np.ndarray) -> np.ndarray:
        """Distance from each `[0, 1]`-pixel image (`N x 64`) to its nearest training image."""
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 64)
        return np.sqrt(self._squared_distances(pixels).min(1))

    def _squared_distances(self, pixels: np.ndarray) -> np.ndarray:
        """`N x n_train` squared distances, clamped at 0 (the expansion rounds below it)."""
        sq = (pixels ** 2).sum(1)[:, None] - 2.0 * pixels @ self._train.T + self._train_sq
        return np.maximum(sq, 0.0)

    def _leave_one_out_distances(self) -> np.ndarray:
        sq = self._squared_distances(self._train)
        np.fill_diagonal(sq, np.inf)
        return np.sqrt(sq.min(1))

    def values(self, pixels: np.ndarray) -> np.ndarray:
        """The objective of `N` checked images (`N x 64`, pixels in `[0, 1]`), vectorized."""
        pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 64)
        # softmax of the fitted linear model by hand: predict_proba's overhead dominates per row
        logits = pixels @ self._coef.T + self._intercept
        logits -= logits.max(1, keepdims=True)
        target = logits[:, self._target_row]
        log_p = target - np.log(np.exp(logits).sum(1))
        if self.output == "p":
            value = np.exp(log_p)
        elif self.output == "log_p":
            value = np.maximum(log_p, -690.0)
        else:
            others = np.delete(logits, self._target_row, axis=1)
            value = target - np.log(np.exp(others).sum(1))
        if self.off_data_penalty > 0:
            excess = np.maximum(0.0, self.data_distance(pixels) - self.off_data_radius)
            value = value - self.off_data_penalty * excess ** 2
        return value

    def score(self, design: np.ndarray) -> dict[str, float]:
        return {self.objectives[0]: float(self.values(design)[0])}
