"""The lab simulator conforms to the shipped OpenAPI document (property-based).

Hypothesis generates requests from the document's own schemas (``from_schema`` below covers the
JSON-schema subset the document uses), plus valid designs and raw garbage; every reply must carry
a status code the document lists for that operation and a body that validates (jsonschema)
against the documented schema.
"""
from __future__ import annotations

import copy
import json
from importlib.resources import files

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from oracles.labsim import LabSimulator
from oracles.simulated import BoTorchFunctionOracle

DOC = json.loads(files("oracles").joinpath("openapi.json").read_text())
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def node_ref(ref: str) -> list[str]:
    """``#/a/b`` -> ``["a", "b"]``."""
    return ref.removeprefix("#/").split("/")


def deref(node: dict) -> dict:
    """Follow ``$ref`` pointers into the document."""
    while isinstance(node, dict) and set(node) == {"$ref"}:
        target = DOC
        for part in node_ref(node["$ref"]):
            target = target[part]
        node = target
    return node


def validator(schema: dict) -> Draft202012Validator:
    """A validator whose ``#/components/...`` references resolve inside the document."""
    return Draft202012Validator({**schema, "components": DOC["components"]})


def check(path: str, method: str, response: httpx.Response) -> None:
    """The reply's status code is documented for the operation and its body fits the schema."""
    responses = DOC["paths"][path][method]["responses"]
    code = str(response.status_code)
    assert code in responses, f"{method.upper()} {path} answered undocumented {code}: {response.text}"
    documented = deref(responses[code])
    content = documented.get("content", {}).get("application/json")
    assert content is not None
    assert response.headers["content-type"] == "application/json"
    errors = list(validator(content["schema"]).iter_errors(response.json()))
    assert not errors, f"{method.upper()} {path} {code}: {errors[0].message}"
    for header in documented.get("headers", {}):
        assert header in response.headers


JSON_LEAF = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=6) | \
    st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUE = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


def from_schema(schema: dict) -> st.SearchStrategy:
    """Values valid under ``schema`` (the subset of JSON Schema this document uses)."""
    schema = deref(schema)
    if "oneOf" in schema:
        return st.one_of([from_schema(s) for s in schema["oneOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**9, 10**9)
    if kind == "integer":
        return st.integers(schema.get("minimum", -10**9), 10**9)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(max_size=10)
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {})) if schema.get("items") else JSON_VALUE,
                        min_size=schema.get("minItems", 0), max_size=schema.get("maxItems", 4))
    if kind == "object":
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        extra = st.dictionaries(st.text(max_size=5).filter(lambda k: k not in props), JSON_VALUE,
                                max_size=2)
        return st.builds(lambda fixed, more: {**more, **fixed}, st.fixed_dictionaries(
            {k: from_schema(v) for k, v in props.items() if k in required},
            optional={k: from_schema(v) for k, v in props.items() if k not in required}), extra)
    return JSON_VALUE


def _bounded(schema: dict, depth: int) -> dict:
    """The recursive Design schema unrolled ``depth`` levels (generators cannot recurse)."""
    if depth == 0:
        return {"type": "array", "minItems": 1, "maxItems": 4, "items": {"type": "number"}}
    return {"type": "array", "minItems": 1, "maxItems": 4,
            "items": {"oneOf": [{"type": "number"}, _bounded(schema, depth - 1)]}}


JOB_REQUEST = copy.deepcopy(DOC["components"]["schemas"]["JobRequest"])
JOB_REQUEST["properties"]["design"] = _bounded(DOC["components"]["schemas"]["Design"], 2)
KEY_SCHEMA = deref(DOC["components"]["parameters"]["IdempotencyKey"])["schema"]
JOB_ID_SCHEMA = deref(DOC["components"]["parameters"]["JobId"])["schema"]
VALID_BODY = st.fixed_dictionaries(
    {"design": st.lists(st.floats(0, 1), min_size=2, max_size=2)},
    optional={"metadata": st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5),
                                          max_size=3)})


@pytest.fixture(scope="module")
def lab():
    with LabSimulator(BoTorchFunctionOracle("branin", latency_s=0.0)) as server:
        yield server


@pytest.fixture(scope="module")
def http(lab):
    """One client for all examples (a new client per request costs ~50 ms of TLS setup)."""
    with httpx.Client(base_url=lab.url) as client:
        yield client


def test_document_is_well_formed():
    assert DOC["openapi"].startswith("3.1")
    for schema in DOC["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    text = json.dumps(DOC)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        deref({"$ref": ref})  # every reference resolves
    # the JSON-schema checks would pass vacuously if schemas were empty: prove they bite
    assert list(validator(DOC["components"]["schemas"]["Job"]).iter_errors({"id": "x"}))


@SETTINGS
@given(body=st.one_of(from_schema(JOB_REQUEST), VALID_BODY), key=from_schema(KEY_SCHEMA))
@pytest.mark.slow
def test_create_and_read_jobs_conform(lab, http, body, key):
    reply = http.post("/jobs", json=body, headers={"Idempotency-Key": key})
    check("/jobs", "post", reply)
    if reply.status_code in (200, 201):
        job = reply.json()
        assert job["key"] == key
        again = http.post("/jobs", json=body, headers={"Idempotency-Key": key})
        check("/jobs", "post", again)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
        read = http.get(f"/jobs/{job['id']}")
        check("/jobs/{id}", "get", read)
        assert read.json()["id"] == job["id"] and read.json()["status"] in ("succeeded", "failed")
        cancel = http.post(f"/jobs/{job['id']}/cancel", json={})
        check("/jobs/{id}/cancel", "post", cancel)
        assert cancel.json()["status"] == read.json()["status"]  # finished jobs stay finished
    assert all(n <= 1 for n in lab.stats()["evaluations"].values())


@SETTINGS
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode),
       key=st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126),
                               max_size=8).filter(lambda k: k == k.strip()))  # h11 rule
def test_garbage_requests_get_documented_errors(lab, http, raw, key):
    headers = {} if key is None else {"Idempotency-Key": key}
    reply = http.post("/jobs", content=raw, headers=headers)
    check("/jobs", "post", reply)


@SETTINGS
@given(job_id=from_schema(JOB_ID_SCHEMA))
def test_unknown_jobs_conform(lab, http, job_id):
    for reply, path, method in ((http.get(f"/jobs/{job_id}"), "/jobs/{id}", "get"),
                                (http.post(f"/jobs/{job_id}/cancel"),
                                 "/jobs/{id}/cancel", "post")):
        check(path, method, reply)


def test_health_and_stats_conform(lab, http):
    check("/health", "get", http.get("/health"))
    assert http.get("/health").json() == {"status": "ok", "design_shape": [2], "objectives": ["y"]}
    health = DOC["components"]["schemas"]["Health"]  # the optional fields are typed: prove it
    assert list(validator(health).iter_errors({"status": "ok", "design_shape": [0]}))
    assert list(validator(health).iter_errors({"status": "ok", "objectives": "y"}))
    check("/stats", "get", http.get("/stats"))
    assert http.get("/undocumented").status_code == 404


def test_auth_failures_conform():
    with LabSimulator(BoTorchFunctionOracle("branin"), token="t0ken") as lab:
        reply = httpx.post(f"{lab.url}/jobs", json={"design": [0.5, 0.5]},
                           headers={"Idempotency-Key": "k"})
        check("/jobs", "post", reply)
        assert reply.status_code == 401 and reply.headers["WWW-Authenticate"] == "Bearer"
        check("/jobs/{id}", "get", httpx.get(f"{lab.url}/jobs/abc"))
