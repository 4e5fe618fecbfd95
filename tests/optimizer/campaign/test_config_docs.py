"""``docs/config.md`` is generated from the config models: the committed file is current and
names every setting of ``CampaignConfig``."""
from __future__ import annotations

from pathlib import Path

import pytest

from optimizer.campaign.config_docs import REGEN_COMMAND, leaf_fields, main, render_config_docs

DOCS = Path(__file__).resolve().parents[3] / "docs" / "config.md"


@pytest.fixture(scope="module")
def rendered() -> str:
    return render_config_docs()


def test_committed_docs_are_current(rendered: str) -> None:
    assert DOCS.exists(), f"{DOCS} is missing; generate it with `{REGEN_COMMAND}`"
    assert DOCS.read_text(encoding="utf-8") == rendered, (
        f"{DOCS} is stale (the config models changed); regenerate it with `{REGEN_COMMAND}`")


def test_every_leaf_field_is_documented(rendered: str) -> None:
    leaves = list(leaf_fields())
    assert {"sampler.ess_threshold", "oracle.retry.max_attempts", "objectives.direction",
            "feature_map.kind", "oracle.target_digit", "budget.q", "name"} <= set(leaves)
    missing = [f for f in leaves if f"| `{f}` |" not in rendered]
    assert not missing, f"not in docs/config.md: {missing}"


def test_deterministic_and_says_how_to_regenerate(rendered: str) -> None:
    assert render_config_docs() == rendered
    assert "Generated" in rendered.splitlines()[2] and REGEN_COMMAND in rendered.splitlines()[2]
    assert " at 0x" not in rendered and "<function" not in rendered and "PydanticUndefined" not in rendered
    assert '`oracle.kind = "http"`' in rendered and '`feature_map.kind = "identity"`' in rendered
    assert "one of `\"systematic\"`" in rendered  # a validator's registry, rendered as choices


def test_check_flags_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  rendered: str) -> None:
    stale = tmp_path / "config.md"
    stale.write_text(rendered.replace("`budget.q`", "`budget.qq`"), encoding="utf-8")
    assert main(["--check", "--out", str(stale)]) == 1
    assert REGEN_COMMAND in capsys.readouterr().err
    assert main(["--check", "--out", str(tmp_path / "absent.md")]) == 1
    capsys.readouterr()
    assert main(["--out", str(stale)]) == 0 and main(["--check", "--out", str(stale)]) == 0
