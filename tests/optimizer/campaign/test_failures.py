"""Failure reasons grouped by cause: realistic reasons as oracles/http.py, command.py, safe.py and
validation.py word them; per-query parts (keys, job ids, durations, values) must not split a cause,
while the parts that are the cause (status code, message, shapes, exit code) must."""
from __future__ import annotations

import pytest

from optimizer.campaign.failures import (
    NO_REASON,
    FailureGroup,
    failure_cause,
    format_failure_groups,
    group_failures,
)

HTTP_422 = "HTTP 422: design must have shape [16], got [2]"


@pytest.mark.parametrize(
    ("a", "b", "cause"),
    [
        # http.py: a lab's 4xx / 5xx reply (reply.reason())
        (HTTP_422, HTTP_422, HTTP_422),
        # http.py: poll of a job the lab forgot (job ids vary per query)
        ("lab has no job 'job-7f3a9c21' (HTTP 404)", "lab has no job '2c9e1d44' (HTTP 404)",
         "lab has no job <id> (HTTP 404)"),
        # http.py: a job answering for another key
        ("lab job 'j-1' belongs to key 'camp:3:17', not 'camp:3:18'",
         "lab job 'j-2' belongs to key 'camp:0:1', not 'camp:0:2'",
         "lab job <id> belongs to key '<key>', not '<key>'"),
        # command.py: timeout with its stderr tail
        ("sim.py timed out after 30 s; its process group was killed | stderr tail: step 812",
         "sim.py timed out after 30 s; its process group was killed | stderr tail: step 17\nwarn",
         "sim.py timed out after <t> s; its process group was killed"),
        # command.py: a crash; the stderr tail carries per-run detail
        ("sim.py exited with code 137 | stderr tail: Killed pid 48213",
         "sim.py exited with code 137 | stderr tail: Killed pid 1022",
         "sim.py exited with code 137"),
        # command.py: not JSON, with stdout head and stderr tail
        ("sim.py printed output that is not a JSON object (Expecting value: line 1 column 1 "
         "(char 0)); stdout head: 'nan 0.31' | stderr tail: ",
         "sim.py printed output that is not a JSON object (Expecting value: line 1 column 1 "
         "(char 0)); stdout head: 'oops' | stderr tail: x",
         "sim.py printed output that is not a JSON object (Expecting value: line 1 column 1 "
         "(char 0))"),
        # validation.py: a non-finite or negative noise value (the value varies)
        ("invalid result: noise['y'] is -0.0123; a variance must be >= 0",
         "invalid result: noise['y'] is -4.5e-07; a variance must be >= 0",
         "invalid result: noise['y'] is <x>; a variance must be >= 0"),
        # safe.py: a poll that raised, with a uuid job handle in the message
        ("poll failed: KeyError: 'run-9b2f6a3e-1c4d-4e5f-8a9b-0c1d2e3f4a5b'",
         "poll failed: KeyError: 'run-00000000-1111-2222-3333-444455556666'",
         "poll failed: KeyError: 'run-<uuid>'"),
        # validation.py via submit: not submitted, transport error with a hex request id
        ("not submitted: lab replied HTTP 202 without a job id: 'req 4be1f0c9a2'",
         "not submitted: lab replied HTTP 202 without a job id: 'req 00dd13aa77'",
         "not submitted: lab replied HTTP 202 without a job id: 'req <hex>'"),
        # dispatch.py: the objective check
        ("oracle result lacks objective(s) ['y']; it returned ['z']",
         "oracle result lacks objective(s) ['y']; it returned ['z']",
         "oracle result lacks objective(s) ['y']; it returned ['z']"),
    ],
)
def test_same_cause_groups_together(a: str, b: str, cause: str) -> None:
    assert failure_cause(a) == failure_cause(b) == cause
    groups = group_failures([("c:0:0", a), ("c:0:1", b)])
    assert groups == [FailureGroup(cause=cause, count=2, example_key="c:0:0", example=a)]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (HTTP_422, "HTTP 422: design must have shape [16], got [3]"),
        (HTTP_422, "HTTP 500: design must have shape [16], got [2]"),
        ("sim.py exited with code 1 | stderr tail: a", "sim.py exited with code 137 | stderr tail: a"),
        ("invalid result: result['y'] is nan; an oracle result must be finite",
         "invalid result: result['y'] is inf; an oracle result must be finite"),
    ],
)
def test_different_causes_stay_apart(a: str, b: str) -> None:
    assert failure_cause(a) != failure_cause(b)
    assert [g.count for g in group_failures([("k:0:0", a), ("k:0:1", b)])] == [1, 1]


def test_urls_and_addresses_are_not_mangled() -> None:
    reason = ("POST http://127.0.0.1:8123/jobs failed 3 time(s); last error: "
              "ConnectError: [Errno 111] Connection refused")
    assert failure_cause(reason) == reason


def test_sorted_by_count_then_cause_and_first_example_kept() -> None:
    reasons = [("c:0:0", "HTTP 500: boom"), ("c:0:1", HTTP_422), ("c:0:2", "HTTP 500: boom"),
               ("c:1:0", None), ("c:1:1", HTTP_422), ("c:1:2", "HTTP 500: boom"),
               ("c:1:3", "  ")]
    groups = group_failures(reasons)
    assert [(g.cause, g.count, g.example_key) for g in groups] == [
        ("HTTP 500: boom", 3, "c:0:0"), (HTTP_422, 2, "c:0:1"), (NO_REASON, 2, "c:1:0")]
    assert group_failures(reversed(reasons))[0].example_key == "c:1:2"


def test_long_reasons_are_capped() -> None:
    reason = "Traceback: " + "x" * 5000
    (group,) = group_failures([("c:0:0", reason)])
    assert len(group.cause) == 200 and group.cause.endswith("…")
    assert group.example == reason[:500]


def test_format_lines_limit_and_remainder() -> None:
    groups = group_failures([(f"c:0:{i}", HTTP_422) for i in range(12)]
                            + [("c:1:0", "HTTP 500: boom"), ("c:1:1", "poll failed: x"),
                               ("c:1:2", "poll failed: y")])
    assert format_failure_groups(groups) == (
        f"12× {HTTP_422}\n1× HTTP 500: boom\n1× poll failed: x\n1× poll failed: y")
    assert format_failure_groups(groups, limit=2) == (
        f"12× {HTTP_422}\n1× HTTP 500: boom\n… and 2 more causes (2 failures)")
    assert format_failure_groups([]) == ""
    with pytest.raises(ValueError, match="limit"):
        format_failure_groups(groups, limit=-1)
