"""Callable oracle and the factory: import paths, config errors naming the field, every kind builds."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from pydantic import ValidationError

from oracle_helpers import poll_until_done
from oracles.callable import CallableOracle, import_callable
from oracles.errors import OracleConfigError
from oracles.factory import build_oracle, oracle_config
from oracles.labsim import LabSimulator
from oracles.protocol import QueryRequest
from oracles.safe import SafeOracle
from oracles.simulated import BoTorchFunctionOracle


def test_callable_from_import_path_runs_in_threads():
    oracle = CallableOracle("numpy:linalg.norm", objectives=("norm",), max_workers=2)
    handles = oracle.submit([QueryRequest("a", np.array([3.0, 4.0])),
                             QueryRequest("b", np.array([0.0, 0.0, 1.0]))])
    assert [r.values for r in poll_until_done(oracle, handles)] == [{"norm": 5.0}, {"norm": 1.0}]
    oracle.close()


def test_callable_queues_cancels_and_never_reruns_a_key():
    gate, calls = threading.Event(), []

    def slow(x):
        calls.append(float(x[0]))
        gate.wait(30)
        return float(x[0])

    oracle = CallableOracle(slow, max_workers=1)
    handles = oracle.submit([QueryRequest(k, np.array([float(i)])) for i, k in enumerate("abc")])
    oracle.submit([QueryRequest("a", np.array([0.0]))])
    oracle.cancel(handles[2:])
    statuses = [r.status for r in oracle.poll(handles)]
    assert statuses[1:] == ["pending", "cancelled"]
    gate.set()
    results = poll_until_done(oracle, handles[:2])
    assert [r.values for r in results] == [{"y": 0.0}, {"y": 1.0}] and calls == [0.0, 1.0]
    oracle.close()


@pytest.mark.parametrize("path, message", [
    ("numpy.linalg.norm", "must look like 'package.module:function'"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("numpy:no_such_function", "'numpy' has no attribute 'no_such_function'"),
    ("math:pi", "names a float, not a function"),
])
def test_bad_import_paths_are_named(path, message):
    with pytest.raises(OracleConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        import_callable(path)


@pytest.mark.parametrize("kind, options, message", [
    ("htp", {}, "unknown oracle kind 'htp'; choose one of ['botorch', 'callable', 'command'"),
    ("http", {}, "oracle kind 'http': field 'base_url': Field required"),
    ("http", {"base_url": "https://x", "timeout_s": 0},
     "field 'timeout_s': Input should be greater than 0 (got 0)"),
    ("http", {"base_url": "https://x", "retry": {"max_attempts": 0}},
     "field 'retry.max_attempts': Input should be greater than or equal to 1 (got 0)"),
    ("command", {"argv": "python sim.py"}, "field 'argv': Input should be a valid list"),
    ("botorch", {"function": "branin", "nosie_std": 0.1},
     "field 'nosie_std': Extra inputs are not permitted"),
    ("digits", {"target_digit": 12}, "field 'target_digit': Input should be less than or equal"),
    ("digits", {"output": "logit"}, "field 'output': Input should be 'p', 'log_p' or 'log_odds'"),
    ("digits", {"off_data_penalty": -1},
     "field 'off_data_penalty': Input should be greater than or equal to 0"),
    ("callable", {"target": "not a path"}, "field 'target': String should match pattern"),
])
def test_config_errors_name_kind_and_field(kind, options, message):
    with pytest.raises(OracleConfigError) as info:
        oracle_config(kind, options)
    assert message in str(info.value)


@pytest.mark.parametrize("options, field", [
    ({"base_url": "https://x", "token": "s3cr3t-T0KEN-4f9a2b"}, "token"),  # the usual slip
    ({"base_url": "https://x", "bearer": "s3cr3t-T0KEN-4f9a2b"}, "bearer"),
    ({"base_url": "https://x", "token_env": ["s3cr3t-T0KEN-4f9a2b"]}, "token_env"),
])
def test_config_errors_never_echo_a_token_put_in_the_wrong_field(options, field):
    with pytest.raises(OracleConfigError) as info:
        oracle_config("http", options)
    assert f"field {field!r}" in str(info.value) and "value not shown" in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_every_kind_builds_and_scores(tmp_path):
    with LabSimulator(BoTorchFunctionOracle("branin")) as lab:
        configs = {
            "http": {"base_url": lab.url},
            "command": {"argv": [sys.executable, "-c", "print('{\"y\": 2.0}')"]},
            "callable": {"target": "numpy:sum"},
            "botorch": {"function": "branin", "noise_std": 0.1, "seed": 3},
            "digits": {"target_digit": 1, "objective": "y"},
        }
        for kind, options in configs.items():
            oracle = build_oracle(kind, options)
            assert isinstance(oracle, SafeOracle) and oracle.objectives == ("y",)
            design = np.full((8, 8) if kind == "digits" else 2, 0.5)
            [result] = poll_until_done(oracle, oracle.submit([QueryRequest("k", design)]))
            assert result.status == "succeeded", (kind, result)
            oracle.close()
    manual = build_oracle("manual", {"directory": str(tmp_path), "objectives": ["y"]})
    handles = manual.submit([QueryRequest("k", np.zeros(2))])
    assert manual.poll(handles)[0].status == "pending" and manual.inner.pending_path.exists()
    config = oracle_config("botorch", {"function": "hartmann6"})
    with pytest.raises(ValidationError, match="frozen"):
        config.seed = 2  # configs are frozen: stored with the campaign, rebuilt on resume
