"""Secrets: the bearer token never appears in logs, reprs, handles, results or exception text."""
from __future__ import annotations

import http.server
import json
import logging
import shutil
import subprocess
import threading

import numpy as np
import pytest

from oracle_helpers import poll_until_done, requests_for
from oracles.errors import OracleConfigError
from oracles.factory import build_oracle
from oracles.http import HttpOracle, RetryPolicy
from oracles.labsim import FaultPlan, LabSimulator
from oracles.protocol import JobHandle, QueryRequest
from oracles.simulated import BoTorchFunctionOracle

TOKEN = "s3cr3t-T0KEN-4f9a2b"
WRONG = "wr0ng-T0KEN-77c1d0"


def _everything_said(caplog, *objects) -> str:
    return caplog.text + "\n".join(repr(o) for o in objects) + "\n".join(str(o) for o in objects)


def test_token_from_env_authenticates_and_never_leaks(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # httpx / httpcore debug logs included
    monkeypatch.setenv("LAB_TOKEN", TOKEN)
    faults = FaultPlan(script=["500", "drop", "malformed"])
    with LabSimulator(BoTorchFunctionOracle("branin"), token=TOKEN, faults=faults) as lab:
        oracle = build_oracle("http", {"base_url": lab.url, "token_env": "LAB_TOKEN",
                                       "retry": {"backoff_base_s": 0.0}})
        handles = oracle.submit(requests_for(["a", "b"]))
        results = poll_until_done(oracle, handles)
        assert [r.status for r in results] == ["succeeded", "succeeded"]
        logging.getLogger("test").info("oracle is %r, inner %r", oracle, oracle.inner)
        said = _everything_said(caplog, oracle, oracle.inner, *handles, *results)
        assert "HTTP Request" in caplog.text  # the logs were really captured
        assert TOKEN not in said
        oracle.close()


def test_wrong_token_fails_with_a_hint_that_names_the_source_not_the_token(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text(WRONG + "\n")
    with LabSimulator(BoTorchFunctionOracle("branin"), token=TOKEN) as lab:
        oracle = build_oracle("http", {"base_url": lab.url, "token_file": str(token_file)})
        [handle] = oracle.submit(requests_for(["a"]))
        [result] = oracle.poll([handle])
        assert result.status == "failed"
        assert "HTTP 401" in result.error and f"check the token in {token_file}" in result.error
        # a 401 on poll keeps the job pending: the lab job is fine, our credentials are not
        [result] = oracle.poll([handle.__class__("a", "some-job-id")])
        assert result.status == "pending" and "HTTP 401" in result.error
        said = _everything_said(caplog, oracle, handle, result)
        assert WRONG not in said and TOKEN not in said


def test_token_config_errors_name_the_source(monkeypatch, tmp_path):
    monkeypatch.delenv("NO_SUCH_TOKEN", raising=False)
    with pytest.raises(OracleConfigError, match="token_env='NO_SUCH_TOKEN'.*unset or empty"):
        HttpOracle("https://lab.example.org", token_env="NO_SUCH_TOKEN")
    with pytest.raises(OracleConfigError, match="token_file=.*cannot read it"):
        HttpOracle("https://lab.example.org", token_file=tmp_path / "missing")
    with pytest.raises(OracleConfigError, match="plain http to a non-loopback host"):
        HttpOracle("http://lab.example.org")
    with pytest.raises(OracleConfigError, match="must not carry credentials"):
        HttpOracle(f"https://user:{TOKEN}@lab.example.org")


def test_unreachable_lab_errors_do_not_carry_the_token(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LAB_TOKEN", TOKEN)
    with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
        url = lab.url
    oracle = build_oracle("http", {"base_url": url, "token_env": "LAB_TOKEN", "timeout_s": 0.5,
                                   "retry": {"max_attempts": 2, "backoff_base_s": 0.0}})
    [handle] = oracle.submit(requests_for(["a"]))
    [result] = oracle.poll([handle])
    assert result.status == "unknown" and "ConnectError" in result.error
    assert TOKEN not in _everything_said(caplog, handle, result, oracle)


def _self_signed(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls_is_verified_by_default(tmp_path):
    cert, key = _self_signed(tmp_path)
    with LabSimulator(BoTorchFunctionOracle("branin"), tls_cert=cert, tls_key=key) as lab:
        assert lab.url.startswith("https://")
        untrusting = HttpOracle(lab.url, retry=RetryPolicy(max_attempts=2, backoff_base_s=0.0))
        [handle] = untrusting.submit(requests_for(["a"]))
        [result] = untrusting.poll([handle])
        assert result.status == "unknown" and "CERTIFICATE_VERIFY_FAILED" in result.error
        assert lab.stats()["jobs"] == 0  # nothing reached the lab over an unverified channel
        trusting = HttpOracle(lab.url, verify=str(cert), retry=RetryPolicy(backoff_base_s=0.0))
        [result] = poll_until_done(trusting, trusting.submit(requests_for(["a"])))
        assert result.status == "succeeded" and lab.stats()["evaluations"] == {"a": 1}
        untrusting.close()
        trusting.close()


def test_designs_that_json_cannot_carry_fail_without_a_request():
    with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
        oracle = HttpOracle(lab.url)
        [handle] = oracle.submit([QueryRequest("nan", np.array([0.5, np.nan]))])
        [result] = oracle.poll([handle])
        assert result.status == "failed" and "cannot encode the request" in result.error
        # not numbers at all: failed for good too (not "unknown", which would resubmit forever)
        [handle] = oracle.submit([QueryRequest("str", np.array(["a"]))])
        [result] = oracle.poll([handle])
        assert result.status == "failed" and "cannot encode the request" in result.error
        assert lab.stats()["requests"] == 0


class _EchoingLab(http.server.BaseHTTPRequestHandler):
    """A careless lab that echoes the Authorization header back in its error replies."""

    def _echo(self, code: int) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"error": f"bad credentials {self.headers.get('Authorization')}",
                           "status": "failed"}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self._echo(401)

    def do_GET(self) -> None:  # noqa: N802
        # 503 first (retried, logged), then a 200 job reply whose error echoes the token
        self.server.gets += 1  # type: ignore[attr-defined]
        self._echo(503 if self.server.gets == 1 else 200)  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:  # type: ignore[no-untyped-def]
        pass


def test_a_token_echoed_by_the_lab_is_scrubbed_from_errors_and_logs(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LAB_TOKEN", TOKEN)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingLab)
    server.gets = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        oracle = build_oracle("http", {"base_url": f"http://127.0.0.1:{server.server_port}",
                                       "token_env": "LAB_TOKEN", "retry": {"backoff_base_s": 0.0}})
        [handle] = oracle.submit(requests_for(["a"]))
        [refused] = oracle.poll([handle])
        [echoed] = oracle.poll([JobHandle("a", "job-1")])
        oracle.close()
    finally:
        server.shutdown()
        server.server_close()
    assert refused.status == "failed" and "HTTP 401: bad credentials Bearer <secret>" in refused.error
    assert echoed.status == "failed" and "bad credentials Bearer <secret>" in echoed.error
    assert "HTTP 503" in caplog.text  # the retried reply was logged, scrubbed
    assert TOKEN not in _everything_said(caplog, handle, refused, echoed)
