"""Hypothesis fuzzing of what crosses tiltloop's trust boundaries: campaign configs (as data
through ``parse_config``, as TOML text through ``load_config``, as files through ``tiltloop
run``) and lab replies (through ``result_from_reply`` and through the HTTP oracle over a real
socket). Over 1,500 cases in all, reproducible (``derandomize``): no traceback, only the
project's own errors, and nothing written to the database for a rejected config."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.bad_config_cases import BASE, ORACLE_BASES, ReachedRay, campaign_rows, dumps, refuse_ray  # noqa: E402
from faults.bad_lab import BadLab  # noqa: E402
from optimizer.campaign import service  # noqa: E402
from optimizer.campaign.config import CampaignConfig  # noqa: E402
from optimizer.campaign.config_io import load_config, parse_config  # noqa: E402
from optimizer.cli import main  # noqa: E402
from oracles.http import HttpOracle, RetryPolicy  # noqa: E402
from oracles.protocol import STATUSES, JobHandle, QueryRequest, QueryResult  # noqa: E402
from oracles.validation import MAX_ERROR_CHARS, result_from_reply  # noqa: E402
from tiltloop.errors import TiltloopError  # noqa: E402


def _fuzz(n: int) -> settings:
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


# ---- strategies ---------------------------------------------------------------------------------
SCALARS = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20)
           | st.sampled_from(["", "auto", "gmm-toy", "http://127.0.0.1:9", "maximize", "-1", "1e308",
                              "x'; DROP TABLE campaign; --", "кампания", "\x00"])
           | st.integers(4000, 6000).map(lambda n: "a" * n))
#: values a config field plausibly holds, so that many fuzzed configs pass and go further
PLAUSIBLE = (st.integers(0, 64) | st.floats(0.0, 10.0) | st.booleans()
             | st.sampled_from(["gmm-toy", "y", "maximize", "minimize", "identity", "branin"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=8)
TOML_SAFE = st.recursive(  # what TOML can spell: no None, no null keys
    st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8),
        inner, max_size=3), max_leaves=6)


FUZZ_DB = "sqlite:///fuzz.db"


@st.composite
def config_data(draw: st.DrawFn, values: st.SearchStrategy[Any] = VALUES,
                kinds: tuple[str, ...] = tuple(ORACLE_BASES)) -> dict[str, Any]:
    """The base config with one oracle kind and 0-3 random edits (set, add, drop, replace)."""
    data = copy.deepcopy(BASE)
    data["storage"] = {"url": FUZZ_DB}
    data["oracle"] = copy.deepcopy(ORACLE_BASES[draw(st.sampled_from(kinds))])
    values = st.one_of(PLAUSIBLE, values)
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2, 3]))):
        section = draw(st.sampled_from([*data, *data, "bogus", "ray", "history", "surrogate"]))
        op = draw(st.sampled_from(["set", "set", "set", "drop", "replace"]))
        node = data.get(section)
        if op == "drop":
            if isinstance(node, dict) and node and draw(st.booleans()):
                node.pop(draw(st.sampled_from(sorted(node))))
            else:
                data.pop(section, None)
        elif op == "replace" or not isinstance(node, dict):
            data[section] = draw(values)
        else:
            key = draw(st.sampled_from([*node, *node, *node, "kind", "bogus", "total", "address"])
                       | st.text(min_size=1, max_size=8))
            node[key] = draw(values)
    return data


def _check_parse(data: Any) -> CampaignConfig | None:
    try:
        config = parse_config(data, "<fuzz>")
    except TiltloopError:
        event("refused")
        return None
    event("accepted")
    return config


# ---- configs --------------------------------------------------------------------------------------
@_fuzz(500)
@given(config_data())
def test_config_data_is_accepted_or_refused_with_a_config_error(data: dict[str, Any]) -> None:
    _check_parse(data)  # anything else (KeyError, TypeError, RecursionError, ...) fails the test


@_fuzz(100)
@given(st.one_of(VALUES, st.lists(VALUES, max_size=3)))
def test_a_config_that_is_not_a_table_is_refused(data: Any) -> None:
    assert _check_parse(data) is None


@st.composite
def toml_texts(draw: st.DrawFn) -> bytes:
    """The base TOML with byte-level edits, or arbitrary text, or random bytes."""
    base = dumps(draw(config_data(values=TOML_SAFE, kinds=("botorch", "http")))).encode()
    how = draw(st.sampled_from(["edit", "edit", "text", "bytes"]))
    if how == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    if how == "bytes":
        return draw(st.binary(max_size=200))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(base)))
        cut = draw(st.integers(0, 10))
        glue = draw(st.sampled_from([b"", b"[", b"]", b"=", b'"', b"\n", b"[[", b"{", b"\x00",
                                     b"\xff", b"\xef\xbb\xbf", b"'''", b"#", b".", b"nan", b"1e999"]))
        base = base[:at] + glue + base[at + cut:]
    return base


@_fuzz(300)
@given(toml_texts())
def test_toml_files_are_loaded_or_refused_with_a_config_error(text: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "campaign.toml"
        path.write_bytes(text)
        try:
            load_config(path)
            event("accepted")
        except TiltloopError as exc:
            event("refused")
            assert str(path) in str(exc) or "campaign.toml" in str(exc), str(exc)[:300]


@_fuzz(60)
@given(config_data(values=TOML_SAFE, kinds=("botorch", "http")))
def test_tiltloop_run_exits_2_writing_nothing_or_reaches_ray(data: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / f"{uuid.uuid4().hex}.db"
        path = Path(folder) / "campaign.toml"
        path.write_text(dumps(data).replace(FUZZ_DB, f"sqlite:///{db}"), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        saved, service.ray_runtime = service.ray_runtime, refuse_ray
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(["run", str(path)])
        except ReachedRay:
            event("reached Ray")
            return  # a valid config: it got as far as starting the campaign
        finally:
            service.ray_runtime = saved
        event("exit 2")
        assert code == 2, (code, err.getvalue()[:500])
        assert "Traceback" not in out.getvalue() + err.getvalue()
        assert err.getvalue().startswith("tiltloop run: "), err.getvalue()[:300]
        assert campaign_rows(db) == 0


# ---- lab replies ----------------------------------------------------------------------------------
@st.composite
def near_valid_jobs(draw: st.DrawFn) -> dict[str, Any]:
    """A correct succeeded job with 0-2 fields replaced or dropped."""
    job: dict[str, Any] = {"id": "job-1", "key": "k:0:0", "status": "succeeded",
                           "values": {"y": 1.5}, "noise": None, "error": None, "metadata": {}}
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(job)))
        if draw(st.booleans()):
            job.pop(name, None)
        else:
            job[name] = draw(PLAUSIBLE | VALUES)
    return job


JOB_FIELDS = near_valid_jobs() | st.fixed_dictionaries({}, optional={
    "id": SCALARS, "key": SCALARS | st.just("k:0:0"),
    "status": st.sampled_from([*STATUSES, "done", "", "SUCCEEDED"]) | SCALARS,
    "values": VALUES | st.dictionaries(st.sampled_from(["y", "z", ""]), SCALARS, max_size=3),
    "noise": VALUES | st.dictionaries(st.sampled_from(["y", "z"]), SCALARS, max_size=2),
    "error": SCALARS | st.text(min_size=3000, max_size=3000),
    "metadata": VALUES})


def _check_result(result: QueryResult, key: str) -> None:
    assert isinstance(result, QueryResult) and result.key == key
    event(result.status)
    assert result.status in STATUSES
    if result.status == "succeeded":
        assert set(result.values or {}) == {"y"}
        assert all(isinstance(v, float) and math.isfinite(v) for v in result.values.values())
    assert result.error is None or len(result.error) <= MAX_ERROR_CHARS + 100
    json.dumps(result.metadata, allow_nan=False)  # storable


@_fuzz(400)
@given(st.one_of(JOB_FIELDS, VALUES))
def test_any_job_reply_becomes_a_valid_result(reply: Any) -> None:
    _check_result(result_from_reply("k:0:0", reply, ("y",)), "k:0:0")


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN / Infinity tokens included, as a sloppy server sends


REPLY_BODIES = st.one_of(JOB_FIELDS.map(_json_bytes), VALUES.map(_json_bytes), st.binary(max_size=300),
                         st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
REPLY_STATUS = st.sampled_from([200, 201, 202, 204, 301, 400, 401, 404, 409, 422, 429, 500, 503])
REPLY_HEADERS = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/html", "text/plain; charset=latin-1",
                                     "application/json; charset=utf-16"]),
    "Retry-After": st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=20)})


@pytest.fixture(scope="module")
def scripted() -> Any:
    with BadLab("scripted") as lab:
        oracle = HttpOracle(lab.url, objectives=("y",), timeout_s=5.0,
                            retry=RetryPolicy(max_attempts=1, backoff_base_s=0.0))
        yield lab, oracle
        oracle.close()


@_fuzz(350)
@given(status=REPLY_STATUS, headers=REPLY_HEADERS, body=REPLY_BODIES, submit=st.booleans())
def test_any_http_reply_becomes_a_handle_or_a_valid_result(
        scripted: Any, status: int, headers: dict[str, str], body: bytes, submit: bool) -> None:
    lab, oracle = scripted
    lab.reply = (status, headers, b"" if status == 204 else body)
    if submit:
        (handle,) = oracle.submit([QueryRequest("k:0:0", [0.5, 0.5], {})])
        assert isinstance(handle, JobHandle) and handle.key == "k:0:0"
        assert handle.job_id is None or (isinstance(handle.job_id, str) and handle.job_id)
        (result,) = oracle.poll([handle])
    else:
        (result,) = oracle.poll([JobHandle("k:0:0", "job-1", {"job_id": "job-1"})])
    _check_result(result, "k:0:0")
