"""A model folder of two files: a JSON config and a safetensors state (no pickle).

Shared by the small in-repo networks (``MLPDiffusionPrior``, ``DigitClassifier``); each names its
own files and says, through ``missing``, what error a missing file raises (its message tells how
to rebuild the folder).

>>> save_config_and_weights("/tmp/net", "config.json", {"dim": 4}, "model.safetensors", state)
>>> config, state = load_config_and_weights(
...     "/tmp/net", "config.json", "model.safetensors", missing=lambda f: OSError(f"{f} missing"))
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor


def save_config_and_weights(path: str | Path, config_name: str, config: Mapping[str, Any],
                            weights_name: str, state: Mapping[str, Tensor]) -> None:
    """Create ``path``; write ``config`` as indented JSON and ``state`` (detached, contiguous,
    on the CPU) as safetensors."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / config_name).write_text(json.dumps(dict(config), indent=2) + "\n")
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    save_file(tensors, str(path / weights_name))


def load_config_and_weights(
    path: str | Path, config_name: str, weights_name: str, *,
    missing: Callable[[Path], Exception],
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Read the JSON config and the safetensors state of ``path`` (CPU tensors).

    Raises:
        ``missing(file)``: for the first of config and weights that is not a file.
    """
    path = Path(path)
    cfg_file, weights = path / config_name, path / weights_name
    for f in (cfg_file, weights):
        if not f.is_file():
            raise missing(f)
    return json.loads(cfg_file.read_text()), load_file(str(weights))
