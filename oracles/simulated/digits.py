"""An image scorer for `8 x 8` digit images: the probability of a target digit.

At construction a multinomial logistic regression is trained on scikit-learn's bundled
``load_digits`` (1,797 images, pixels scaled from 0..16 to `[0, 1]`) — a second on a CPU, no
download. A design is an `8 x 8` (or `64`) array of pixel intensities in `[0, 1]` — or in
`[-1, 1]` with ``pixel_range="signed"``, the space of the bundled ``digits`` diffusion prior;
values outside are clipped (diffusion samples overshoot a little). The objective is `p(target | image)` (or its
log with ``log_prob=True``), maximized.

>>> oracle = DigitScorerOracle(target_digit=3, seed=0)
>>> oracle.score(oracle.example_image(3))["p_target"] > 0.9
True
"""
from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from oracles.errors import OracleConfigError
from oracles.simulated.base import SimulatedOracle


class DigitScorerOracle(SimulatedOracle):
    """Scores `8 x 8` images by a seeded classifier's probability of ``target_digit``.

    Args:
        target_digit: the digit 0..9 whose probability is the objective.
        log_prob: report `log p` instead of `p`.
        objective: name of the single objective.
        train_fraction: fraction of ``load_digits`` used for training (a seeded subsample).
        pixel_range: ``"unit"`` for designs in `[0, 1]`; ``"signed"`` for designs in `[-1, 1]`
            (the bundled digits prior's output), mapped by `(x + 1) / 2` before scoring.
        latency_s, noise_std, failure_rate, seed: see :class:`SimulatedOracle`.
    """

    def __init__(self, target_digit: int = 3, *, log_prob: bool = False,
                 objective: str = "p_target", train_fraction: float = 1.0,
                 pixel_range: str = "unit", latency_s: float = 0.0, noise_std: float = 0.0, failure_rate: float = 0.0,
                 seed: int = 0) -> None:
        if not 0 <= int(target_digit) <= 9:
            raise OracleConfigError(f"target_digit must be 0..9, got {target_digit}")
        if not 0.1 <= train_fraction <= 1.0:
            raise OracleConfigError(f"train_fraction must be in [0.1, 1], got {train_fraction}")
        if pixel_range not in ("unit", "signed"):
            raise OracleConfigError(
                f"pixel_range must be 'unit' ([0, 1] pixels) or 'signed' ([-1, 1], the bundled "
                f"digits prior), got {pixel_range!r}")
        self.pixel_range = pixel_range
        self.target_digit = int(target_digit)
        self.log_prob = bool(log_prob)
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
        super().__init__(latency_s=latency_s, noise_std=noise_std, failure_rate=failure_rate,
                         seed=seed, name=f"digit{self.target_digit}")

    def example_image(self, digit: int, index: int = 0) -> np.ndarray:
        """The ``index``-th bundled `8 x 8` image of ``digit``, pixels in `[0, 1]`."""
        return self._images[np.flatnonzero(self._labels == digit)[index]].copy()

    def check_design(self, design: np.ndarray) -> np.ndarray:
        design = super().check_design(design)
        if design.size != 64 or design.shape not in ((8, 8), (64,), (1, 8, 8)):
            raise ValueError(f"design must be an 8x8 image (shape (8, 8), (1, 8, 8) or (64,)), "
                             f"got shape {design.shape}")
        pixels = design.reshape(64)
        if self.pixel_range == "signed":
            pixels = (pixels + 1.0) / 2.0
        return np.clip(pixels, 0.0, 1.0)

    def score(self, design: np.ndarray) -> dict[str, float]:
        # softmax of the fitted linear model by hand: predict_proba's overhead dominates at 1 row
        logits = self._coef @ design.reshape(64) + self._intercept
        logits -= logits.max()
        p = float(np.exp(logits[self._target_row]) / np.exp(logits).sum())
        return {self.objectives[0]: float(np.log(max(p, 1e-300))) if self.log_prob else p}
