r"""A frozen 8x8-digit classifier: its penultimate layer is the surrogate's feature map for the
``digits`` prior, its confidence is that prior's support check.

Designs of the ``digits`` prior are `B x 1 x 8 x 8`-dim Tensors in `[-1, 1]`; the map to
scikit-learn's ``load_digits`` pixel range is `pixels = 8 (x + 1)` (0..16).

The network is a small CNN, trained by ``python -m optimizer.priors.train_digits --part
classifier`` on ``load_digits`` with *outlier exposure*: besides the real digits it sees
synthetic non-digits (uniform noise, pixel-shuffled digits, blends of two different digits)
with a uniform target, so that `max_c softmax(f(x))_c` is low off the data's support instead
of being over-confident on garbage. That is what makes confidence usable as a support check.

>>> net = DigitClassifier.from_pretrained("optimizer/priors/bundled/digits/classifier")
>>> feats = net.embed(x)            # B x 32 features, frozen
>>> conf, label = net.confidence(x) # B, B
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from optimizer.priors.files import load_config_and_weights, save_config_and_weights

CONFIG_NAME = "classifier_config.json"
WEIGHTS_NAME = "classifier.safetensors"


class DigitClassifier(nn.Module):
    """Conv(1→16) → Conv(16→32, stride 2) → Linear(512→``embed_dim``) → Linear(→10).

    Args:
        embed_dim: width of the penultimate layer (the feature map's output dimension).
    """

    def __init__(self, embed_dim: int = 32) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.SiLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, embed_dim),
            nn.SiLU(),
        )
        self.head = nn.Linear(embed_dim, 10)

    @staticmethod
    def _as_images(x: Tensor) -> Tensor:
        # Accept `B x 1 x 8 x 8`, `B x 8 x 8` or flat `B x 64` designs.
        if x.dim() == 2 and x.shape[-1] == 64:
            return x.reshape(-1, 1, 8, 8)
        if x.dim() == 3 and x.shape[-2:] == (8, 8):
            return x.unsqueeze(1)
        if x.dim() == 4 and x.shape[-3:] == (1, 8, 8):
            return x
        raise ValueError(
            f"digit designs must be B x 1 x 8 x 8 (or B x 8 x 8, B x 64) Tensors in [-1, 1]; "
            f"got shape {tuple(x.shape)}"
        )

    def embed(self, x: Tensor) -> Tensor:
        """`B x embed_dim`-dim penultimate features of `B x 1 x 8 x 8` designs in `[-1, 1]`."""
        return self.body(self._as_images(x))

    def forward(self, x: Tensor) -> Tensor:
        """`B x 10`-dim class logits."""
        return self.head(self.embed(x))

    @torch.no_grad()
    def confidence(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(max softmax probability, argmax class)``, each a `B`-dim Tensor."""
        probs = self.forward(x).softmax(dim=-1)
        conf, label = probs.max(dim=-1)
        return conf, label

    def save_pretrained(self, path: str | Path) -> None:
        """Write ``classifier_config.json`` and ``classifier.safetensors`` into ``path``."""
        cfg = {"_class_name": "DigitClassifier", "embed_dim": self.embed_dim}
        save_config_and_weights(path, CONFIG_NAME, cfg, WEIGHTS_NAME, self.state_dict())

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> DigitClassifier:
        """Load a frozen (eval mode, ``requires_grad=False``) classifier from ``path``."""
        cfg, state = load_config_and_weights(path, CONFIG_NAME, WEIGHTS_NAME, missing=lambda f: (
            FileNotFoundError(f"digit classifier file {f} is missing; rebuild it with "
                              f"`python -m optimizer.priors.train_digits --part classifier`")))
        net = cls(embed_dim=int(cfg["embed_dim"]))
        net.load_state_dict(state)
        net.eval().requires_grad_(False)
        return net.to(device=device, dtype=dtype or torch.float32)
