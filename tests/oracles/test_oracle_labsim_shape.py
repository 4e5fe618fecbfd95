"""The lab says what it takes: ``python -m oracles.labsim`` serves the bundled priors' functions
over real HTTP, ``GET /health`` describes them, ``HttpOracle.describe`` reads it, and
``check_design_shape`` refuses a prior/lab mismatch before a campaign starts."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest

from oracle_helpers import poll_until_done
from oracles.errors import OracleConfigError, OracleReplyError, OracleTransientError
from oracles.http import HttpOracle
from oracles.labsim import LabSimulator, LabSimulatorProcess
from oracles.protocol import QueryRequest
from oracles.safe import SafeOracle
from oracles.shape import LabDescription, check_design_shape, describe_oracle
from oracles.simulated import BoTorchFunctionOracle, DigitScorerOracle, ManifoldOracle


@pytest.fixture(scope="module")
def manifold_lab() -> Iterator[tuple[LabSimulatorProcess, str]]:
    """The README's simulator, as a subprocess; yields it and its second stdout line."""
    with LabSimulatorProcess(["--function", "manifold"]) as lab:
        yield lab, lab.process.stdout.readline()


@pytest.fixture(scope="module")
def digits_lab() -> Iterator[tuple[LabSimulatorProcess, str]]:
    """The digits simulator in the bundled digits prior's `[-1, 1]` pixels."""
    with LabSimulatorProcess(["--function", "digits", "--pixel-range", "signed",
                              "--output", "log_odds", "--off-data-penalty", "25"]) as lab:
        yield lab, lab.process.stdout.readline()


@pytest.mark.slow
def test_manifold_lab_describes_itself(manifold_lab):
    lab, banner = manifold_lab
    assert banner.strip() == "labsim serves manifold16: designs of shape (16,), objectives ['value']"
    assert httpx.get(f"{lab.url}/health").json() == {
        "status": "ok", "design_shape": [16], "objectives": ["value"]}
    client = HttpOracle(lab.url, objectives=("value",))
    try:
        assert client.describe() == LabDescription((16,), ("value",))
        assert SafeOracle(client).describe() == LabDescription((16,), ("value",))
    finally:
        client.close()


def test_manifold_lab_scores_16d_designs_and_refuses_2d_with_the_shape(manifold_lab):
    lab, _ = manifold_lab
    problem = ManifoldOracle().problem
    client = HttpOracle(lab.url, objectives=("value",))
    try:
        handles = client.submit([QueryRequest("best", problem.optimizer.numpy()),
                                 QueryRequest("flat", np.array([0.5, 0.5]))])
        good, bad = poll_until_done(client, handles)
    finally:
        client.close()
    assert good.status == "succeeded"
    assert good.values["value"] == pytest.approx(problem.optimal_value, abs=1e-3)
    assert bad.status == "failed" and "HTTP 422" in bad.error
    assert "design must have shape (16,)" in bad.error and "got shape (2,)" in bad.error


@pytest.mark.slow
def test_digits_lab_takes_the_digits_prior_images(digits_lab):
    lab, banner = digits_lab
    assert "designs of shape (1, 8, 8), objectives ['p_target']" in banner
    client = HttpOracle(lab.url, objectives=("p_target",))
    reference = DigitScorerOracle.lab(3)  # log-odds, signed pixels, penalty 25: the CLI flags
    three = (2.0 * reference.example_image(3) - 1.0).reshape(1, 8, 8)  # [-1, 1], as the prior
    try:
        assert client.describe() == LabDescription((1, 8, 8), ("p_target",))
        [result] = poll_until_done(client, client.submit([QueryRequest("three", three)]))
    finally:
        client.close()
    expected = reference.score(reference.check_design(three))["p_target"]
    assert result.status == "succeeded" and expected > 1.0  # log-odds: a clear 3
    assert result.values["p_target"] == pytest.approx(expected)


def test_check_design_shape_refuses_a_mismatch_with_the_remedy():
    with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
        client = HttpOracle(lab.url, objectives=("y",))
        try:
            shape = describe_oracle(SafeOracle(client)).design_shape
        finally:
            client.close()
    assert shape == (2,)
    with pytest.raises(OracleConfigError) as info:
        check_design_shape(shape, (16,), where=f"the oracle at {lab.url}", prior="manifold")
    assert str(info.value) == (
        f"the oracle at {lab.url} takes designs of shape (2,) but the prior `manifold` makes "
        f"designs of shape (16,); choose the oracle function that matches the prior (e.g. "
        f"`python -m oracles.labsim --function manifold`) or another prior")
    with pytest.raises(OracleConfigError, match=r"--function digits --pixel-range signed"):
        check_design_shape((16,), (1, 8, 8), where="the lab", prior="digits")
    check_design_shape((16,), (16,), where="the lab")  # a match passes
    check_design_shape(None, (16,), where="the lab")   # a lab that says nothing: nothing to check


def test_in_process_oracles_know_their_design_shape():
    assert BoTorchFunctionOracle("hartmann6").design_shape == (6,)
    assert SafeOracle(ManifoldOracle()).design_shape == (16,)
    assert describe_oracle(SafeOracle(ManifoldOracle())) == LabDescription((16,), ("value",))


class _StubHealth(BaseHTTPRequestHandler):
    """``GET /health`` answers ``server.reply`` = (status, body bytes)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        status, body = self.server.reply  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubHealth)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status, body, expected", [
    (200, {"status": "ok"}, None),  # says nothing about itself
    (404, {"error": "no route"}, None),  # has no /health
    (200, {"status": "ok", "objectives": ["y"]}, LabDescription(None, ("y",))),
    (200, {"status": "ok", "design_shape": [2]}, LabDescription((2,), None)),
])
def test_describe_reads_what_the_lab_says(stub, status, body, expected):
    stub.reply = (status, json.dumps(body).encode())
    client = HttpOracle(f"http://127.0.0.1:{stub.server_address[1]}")
    try:
        assert client.describe() == expected
    finally:
        client.close()


@pytest.mark.parametrize("status, body, error, message", [
    (200, b'{"status": "ok", "design_shape": [16, 0]}', OracleReplyError, "field `design_shape`"),
    (200, b'{"status": "ok", "objectives": "value"}', OracleReplyError, "field `objectives`"),
    (200, b"<html>", OracleReplyError, "not JSON"),
    (503, b'{"error": "warming up"}', OracleTransientError, "HTTP 503"),
])
def test_describe_names_a_bad_health_reply(stub, status, body, error, message):
    stub.reply = (status, body)
    client = HttpOracle(f"http://127.0.0.1:{stub.server_address[1]}")
    try:
        with pytest.raises(error, match=message):
            client.describe()
    finally:
        client.close()


def test_describe_raises_transient_when_the_lab_is_down(stub):
    url = f"http://127.0.0.1:{stub.server_address[1]}"
    stub.shutdown()
    stub.server_close()
    client = HttpOracle(url)
    try:
        with pytest.raises(OracleTransientError, match="cannot be reached"):
            client.describe(timeout_s=2.0)
    finally:
        client.close()
