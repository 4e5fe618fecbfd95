"""Quality of the bundled ``digits`` prior and of its frozen classifier.

Quality metric (issue 7): a classifier trained on the real digits recognizes at least 90% of
plain prior samples as some digit with confidence, and the class histogram of the samples is
close to the data's: total variation `½ Σ_c |p̂_c − p_c| ≤ 0.15` (256 samples: sampling noise
alone gives ≈ 0.075; a prior that drops two digits gives ≥ 0.2).

"With confidence" = max softmax ≥ 0.9 of a classifier trained with outlier exposure, so that
non-digits get near-uniform outputs: real held-out digits pass at 94.7% (at 0.5, the registry's
looser support rule: 99.2%; uniform noise / shuffled pixels ≤ 0.2%, 50/50 blends of two digits
~10%). The bundled prior's samples (50 steps) pass at ~91% (at 0.5: ~98%).
"""
from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler, UNet2DModel
from prior_sampling import plain_samples

from optimizer.priors.diffusers_pixel import PixelDiffusersPrior
from optimizer.priors.digits_embedding import DigitClassifier
from optimizer.priors.registry import BUNDLED, load_prior
from optimizer.priors.train_digits import (
    SCHEDULER_CONFIG,
    UNET_CONFIG,
    load_digit_data,
    stratified_split,
    synthetic_non_digits,
    train_classifier,
)
from optimizer.threads import torch_threads

CONFIDENT = 0.5  # = registry.DIGITS_CONFIDENCE
STRICT = 0.9


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    return DigitClassifier.from_pretrained(BUNDLED["digits"].path / "classifier")


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor]:
    return load_digit_data()


def total_variation(labels: torch.Tensor, reference: torch.Tensor) -> float:
    p = torch.bincount(labels, minlength=10).double() / len(labels)
    q = torch.bincount(reference, minlength=10).double() / len(reference)
    return 0.5 * float((p - q).abs().sum())


def test_classifier_is_accurate_and_rejects_non_digits(classifier, data):
    x, y = data
    _, held_out = stratified_split(y, 0.2, torch.Generator().manual_seed(0))  # as trained
    conf, label = classifier.confidence(x[held_out])
    assert (label == y[held_out]).double().mean().item() >= 0.97
    assert (conf >= CONFIDENT).double().mean().item() >= 0.97
    assert (conf >= STRICT).double().mean().item() >= 0.9
    fakes = synthetic_non_digits(x[held_out], y[held_out], 600, torch.Generator().manual_seed(1))
    conf_fake, _ = classifier.confidence(fakes)
    assert (conf_fake[:400] >= CONFIDENT).double().mean().item() <= 0.02  # noise, shuffled
    assert (conf_fake[400:] >= CONFIDENT).double().mean().item() <= 0.2  # two-digit blends


@pytest.mark.slow
def test_classifier_weights_are_reproduced_by_the_training_script(classifier, data):
    x, y = data
    with torch_threads(1):
        net, report = train_classifier(x, y, seed=0, epochs=40)
    for (k, v), (k2, v2) in zip(net.state_dict().items(), classifier.state_dict().items()):
        assert k == k2
        torch.testing.assert_close(v, v2, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_prior_samples_are_confident_digits_with_the_data_class_histogram(classifier, data):
    prior = load_prior("digits")
    samples = torch.cat([plain_samples(prior, 256, 50, seed=s).cpu().float() for s in (0, 1)])
    assert samples.shape == (512, 1, 8, 8)
    assert float(samples.abs().max()) < 1.5  # design range [-1, 1], small overshoot
    conf, label = classifier.confidence(samples)
    confident = (conf >= STRICT).double().mean().item()
    assert confident >= 0.9, confident
    assert (conf >= CONFIDENT).double().mean().item() >= 0.95
    tv = total_variation(label, data[1])
    assert tv <= 0.15, (tv, torch.bincount(label, minlength=10).tolist())


def test_an_untrained_prior_fails_the_same_check(classifier):
    """Negative control: the quality check can fail (same architecture, random weights)."""
    torch.manual_seed(0)
    untrained = PixelDiffusersPrior(UNet2DModel(**UNET_CONFIG), DDPMScheduler(**SCHEDULER_CONFIG))
    samples = plain_samples(untrained, 64, 20, seed=0).cpu().float()
    conf, _ = classifier.confidence(samples.clamp(-1, 1))
    assert (conf >= CONFIDENT).double().mean().item() < 0.3
