"""Code-executing oracles (callable, command) run only where the operator allows them: a config
file the operator names is consent for that process; a config read back from the database needs
the host's allowlist (environment or allow.toml), and a refused one exits 2 with nothing built,
imported, run or written."""
from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bench.bad_config_cases import BASE, dumps  # noqa: E402
from optimizer.campaign import oracle_allow  # noqa: E402
from optimizer.campaign.config_io import load_config, parse_config  # noqa: E402
from optimizer.campaign.config_oracle import KIND_MODELS, build  # noqa: E402
from optimizer.campaign.oracle_allow import (OracleNotAllowed, check_oracle_allowed,  # noqa: E402
                                             consent)
from optimizer.cli import main  # noqa: E402
from oracles.errors import OracleConfigError  # noqa: E402
from storage import NewCandidate, Storage  # noqa: E402
from storage.migrate import upgrade  # noqa: E402

MARKER_MODULE = """\
from pathlib import Path
Path({marker!r}).write_text("imported")
def f(x):
    return {{"y": 1.0}}
"""


@pytest.fixture(autouse=True)
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A host with no allowlist: HOME without allow.toml, no allow variables, no consent."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("TILTLOOP_ALLOW_CALLABLES", "TILTLOOP_ALLOW_COMMANDS", "TILTLOOP_ALLOW_FILE"):
        monkeypatch.delenv(name, raising=False)
    saved = set(oracle_allow._consented)
    oracle_allow._consented.clear()
    yield home
    oracle_allow._consented.clear()
    oracle_allow._consented.update(saved)


def _callable(target: str = "math:sqrt") -> Any:
    return KIND_MODELS["callable"].model_validate({"kind": "callable", "target": target})


def _command(argv: list[str], **kw: Any) -> Any:
    return KIND_MODELS["command"].model_validate({"kind": "command", "argv": argv, **kw})


def test_callable_refused_without_allowlist_names_kind_target_and_remedy() -> None:
    with pytest.raises(OracleNotAllowed) as err:
        check_oracle_allowed(_callable("pkg.sims:score"))
    msg = str(err.value)
    assert "'callable'" in msg and "'pkg.sims:score'" in msg
    assert "TILTLOOP_ALLOW_CALLABLES=pkg.sims" in msg and "allow.toml" in msg


@pytest.mark.parametrize("allowed, target, ok", [
    ("math", "math:sqrt", True), ("pkg", "pkg.sims.deep:f", True), ("pkg.sims", "pkg.sims:f", True),
    ("pkg.sim", "pkg.sims:f", False), ("other, pkg.sims", "pkg.sims:f", True), ("*", "x.y:z", True),
    ("", "math:sqrt", False)])
def test_callable_module_prefixes(monkeypatch: pytest.MonkeyPatch, allowed: str, target: str,
                                  ok: bool) -> None:
    monkeypatch.setenv("TILTLOOP_ALLOW_CALLABLES", allowed)
    if ok:
        check_oracle_allowed(_callable(target))
    else:
        with pytest.raises(OracleNotAllowed):
            check_oracle_allowed(_callable(target))


def test_command_by_name_by_path_and_hijacking_env(monkeypatch: pytest.MonkeyPatch) -> None:
    oracle = _command(["python3", "sim.py"])
    with pytest.raises(OracleNotAllowed, match="TILTLOOP_ALLOW_COMMANDS=python3"):
        check_oracle_allowed(oracle)
    monkeypatch.setenv("TILTLOOP_ALLOW_COMMANDS", "python3")
    check_oracle_allowed(oracle)
    real = os.path.realpath(shutil.which("python3") or "")
    monkeypatch.setenv("TILTLOOP_ALLOW_COMMANDS", f"/no/such/sim,{real}")
    check_oracle_allowed(oracle)  # an absolute entry matches what argv[0] resolves to
    with pytest.raises(OracleNotAllowed):
        check_oracle_allowed(_command(["perl", "sim.pl"]))
    for env in ({"LD_PRELOAD": "/tmp/x.so"}, {"PYTHONPATH": "/tmp"}, {"PATH": "/tmp"}):
        with pytest.raises(OracleNotAllowed, match="which code runs"):
            check_oracle_allowed(_command(["python3", "sim.py"], env=env))
    check_oracle_allowed(_command(["python3", "sim.py"], env={"SIM_MODE": "fast"}))


def test_allow_file(host: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = host / ".config" / "tiltloop" / "allow.toml"
    default.parent.mkdir(parents=True)
    default.write_text('\ufeffcallables = ["math"]\ncommands = ["python3"]\n', encoding="utf-8")
    check_oracle_allowed(_callable("math:sqrt"))
    check_oracle_allowed(_command(["python3"]))
    other = tmp_path / "other.toml"
    other.write_text('callables = ["json"]\n')
    monkeypatch.setenv("TILTLOOP_ALLOW_FILE", str(other))
    check_oracle_allowed(_callable("json:dumps"))
    with pytest.raises(OracleNotAllowed, match=str(other)):
        check_oracle_allowed(_callable("math:sqrt"))
    for text, words in (('callables = "math"', "list of strings"), ("commands = [", "cannot be read"),
                        ('modules = ["x"]', "unknown field")):
        other.write_text(text)
        with pytest.raises(OracleConfigError, match=words):
            check_oracle_allowed(_callable("math:sqrt"))
    monkeypatch.setenv("TILTLOOP_ALLOW_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(OracleConfigError, match="does not exist"):
        check_oracle_allowed(_callable("math:sqrt"))


def test_non_code_kinds_need_nothing() -> None:
    check_oracle_allowed(KIND_MODELS["botorch"].model_validate({"kind": "botorch"}))
    check_oracle_allowed(KIND_MODELS["http"].model_validate(
        {"kind": "http", "base_url": "http://127.0.0.1:9"}))


def _config_data(target: str) -> dict[str, Any]:
    data = {k: v for k, v in BASE.items() if k != "storage"}
    return {**data, "name": "allow-c", "oracle": {"kind": "callable", "target": target}}


def test_a_file_the_operator_names_is_consent_for_that_exact_oracle(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(dumps(_config_data("math:sqrt")))
    config = load_config(path)
    build(config.oracle).close()  # consented: the operator named the file
    stored = parse_config(config.to_json_dict(), "the config stored with campaign 'allow-c'")
    build(stored.oracle).close()  # the same oracle read back from the database: still consented
    changed = parse_config(_config_data("math:floor"), "a new stored version")
    with pytest.raises(OracleNotAllowed):
        build(changed.oracle)
    oracle_allow._consented.clear()  # a new process (resume, serve): consent is not stored
    with pytest.raises(OracleNotAllowed):
        build(stored.oracle)
    consent(stored.oracle)
    build(stored.oracle).close()


def test_resume_of_a_stored_callable_exits_2_with_nothing_imported_or_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Whoever can write the campaign table names a module whose import runs code: ``resume``
    refuses it before importing it or writing anything."""
    marker = tmp_path / "imported"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "evil_oracle_mod.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    url = f"sqlite:///{tmp_path / 'a.db'}"
    upgrade(url)
    config = parse_config(_config_data("evil_oracle_mod:f"))
    with Storage.open(url) as st:
        st.create_campaign("allow-c", config.to_json_dict(), budget=config.budget.total)
        st.update_campaign("allow-c", status="paused")
        events = len(st.list_events("allow-c"))
    code = main(["resume", "allow-c", "--url", url])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "'callable'" in err and "evil_oracle_mod:f" in err and "TILTLOOP_ALLOW_CALLABLES" in err
    assert not marker.exists()  # never imported
    with Storage.open(url) as st:
        assert st.load_campaign("allow-c").status == "paused"  # nothing written
        assert len(st.list_events("allow-c")) == events
    with Storage.open(url) as st:  # a query at the oracle: cancel must not rebuild the oracle
        st.record_round("allow-c", 0, alpha=1.0, candidates=[NewCandidate(np.zeros(2))],
                        selected=[0], oracle_name="c")
        (q,) = st.list_queries("allow-c")
        st.transition_query(q.key, expected="pending", new="dispatched")
    assert main(["campaign", "cancel", "allow-c", "--url", url, "--yes"]) == 0
    assert not marker.exists()
    with Storage.open(url) as st:
        (q,) = st.list_queries("allow-c")
        assert q.status == "cancelled" and "not allowed on this host" in (q.error or "")
