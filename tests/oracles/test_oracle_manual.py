"""Manual (ask/tell) oracle: export, fill in, import; malformed files rejected with line numbers."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from oracles.errors import ManualResultsError
from oracles.manual import ManualOracle
from oracles.protocol import JobHandle, QueryRequest


def _requests():
    return [QueryRequest("a", np.array([0.1, 0.2])), QueryRequest("b", np.eye(2)),
            QueryRequest("c", np.array([0.5, 0.5]))]


def test_csv_round_trip(tmp_path):
    oracle = ManualOracle(tmp_path, objectives=("yield", "purity"))
    handles = oracle.submit(_requests())
    with open(oracle.pending_path) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["key"] for r in rows] == ["a", "b", "c"]
    assert rows[1]["shape"] == "2x2" and [rows[1][f"x{i}"] for i in range(4)] == \
        ["1.0", "0.0", "0.0", "1.0"]
    rows[0].update({"yield": "0.7", "purity": "0.9"})
    rows[1]["error"] = "sample contaminated"
    with open(tmp_path / "filled.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = oracle.import_results(tmp_path / "filled.csv")
    assert summary.succeeded == ("a",) and summary.failed == ("b",)
    assert summary.still_pending == ("c",)
    a, b, c = oracle.poll(handles)
    assert a.status == "succeeded" and a.values == {"yield": 0.7, "purity": 0.9}
    assert b.status == "failed" and b.error == "sample contaminated"
    assert c.status == "pending"
    assert [r["key"] for r in csv.DictReader(open(oracle.pending_path))] == ["c"]
    oracle.import_results(tmp_path / "filled.csv")  # importing the same file again is harmless
    restarted = ManualOracle(tmp_path, objectives=("yield", "purity"))  # state is on disk
    assert restarted.poll(handles) == [a, b, c]
    assert restarted.poll([JobHandle("zzz", None)])[0].status == "unknown"


def test_json_round_trip_with_noise(tmp_path):
    oracle = ManualOracle(tmp_path, objectives=("y",), export_format="json")
    handles = oracle.submit(_requests())
    items = json.loads(oracle.pending_path.read_text())
    assert items[1]["design"] == [[1.0, 0.0], [0.0, 1.0]] and items[1]["values"] == {"y": None}
    items[0]["values"]["y"] = 1.25
    items[0]["noise"] = {"y": 0.01}
    items[2]["values"]["y"] = -3
    (tmp_path / "filled.json").write_text(json.dumps(items))
    oracle.import_results(tmp_path / "filled.json")
    a, b, c = oracle.poll(handles)
    assert a.values == {"y": 1.25} and a.noise == {"y": 0.01}
    assert b.status == "pending" and c.values == {"y": -3.0}


def test_malformed_csv_is_rejected_with_every_bad_line_and_nothing_imported(tmp_path):
    oracle = ManualOracle(tmp_path, objectives=("y", "z"))
    handles = oracle.submit(_requests())
    bad = tmp_path / "bad.csv"
    bad.write_text("key,y,z,error\n"
                   "a,1.0,2.0,\n"          # line 2: fine
                   "b,abc,1,\n"            # line 3: not a number
                   "nope,1,2,\n"           # line 4: unknown key
                   "\n"                    # line 5: blank, skipped
                   "c,inf,1,\n"            # line 6: not finite
                   "a,1.0,,\n"             # line 7: duplicate key + half filled
                   "c,1,2,broken\n")       # line 8: duplicate + error with values
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(bad)
    message, lines = str(info.value), [line for line, _ in info.value.problems]
    assert "nothing was imported" in message
    assert f"{bad}, line 3: column 'y': 'abc' is not a number" in message
    assert f"{bad}, line 4: key 'nope' is not a query of this oracle" in message
    assert f"{bad}, line 6: column 'y': 'inf' is not finite" in message
    assert f"{bad}, line 7: key 'a' appears again (first on line 2)" in message
    assert f"{bad}, line 7: objective(s) ['z'] empty while others are filled" in message
    assert f"{bad}, line 8: both 'error' and objective values are filled" in message
    assert 2 not in lines and 5 not in lines
    assert [r.status for r in oracle.poll(handles)] == ["pending"] * 3


@pytest.mark.parametrize("text, line, message", [
    ("key,yy\na,1\n", 1, "header lacks column(s) ['y']"),
    ("", 1, "the file is empty"),
    ("key,y\na,1,2\n", 2, "more cells than header columns"),
])
def test_bad_csv_structure_names_the_line(tmp_path, text, line, message):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    oracle.submit(_requests())
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(path)
    assert info.value.problems[0][0] == line and message in info.value.problems[0][1]
    assert f"line {line}: " in str(info.value)


@pytest.mark.parametrize("name, text, line, message", [
    ("r.json", '[\n {"key": "a", "values": {"y": 1}},\n {"key": "b", "values": {"y": }}\n]',
     3, "not valid JSON"),
    ("r.json", '[\n {"key": "a", "values": {"y": 1}},\n\n 7\n]', 4, "expected an object"),
    ("r.jsonl", '{"key": "a", "values": {"y": 1}}\n{"key": "b", "values": {"y": "x"}}\n',
     2, "'x' is not a number"),
    ("r.jsonl", '{"key": "a", "values": {"y": 1}}\n\n{"key": "c" "values"}\n', 3,
     "not valid JSON"),
    ("r.jsonl", '{"key": "a", "values": {"y": 1}}\n{"key": "b", "values": {"y": 1' + "0" * 400
     + '}}\n', 2, "is too large"),
])
def test_bad_json_names_the_line(tmp_path, name, text, line, message):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    oracle.submit(_requests())
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(path)
    assert (line, ) == (info.value.problems[0][0], ) and message in info.value.problems[0][1]


def test_json_lines_keep_line_separators_inside_strings(tmp_path):
    # U+2028 and U+0085 are legal raw inside JSON strings; they do not end a JSON Lines row
    oracle = ManualOracle(tmp_path, objectives=("y",))
    oracle.submit(_requests())
    path = tmp_path / "r.jsonl"
    path.write_text('{"key": "a", "error": "pump\u2028jammed\x85"}\r\n'
                    '{"key": "b", "values": {"y": 2.5}}\n', encoding="utf-8")
    summary = oracle.import_results(path)
    assert (summary.failed, summary.succeeded) == (("a",), ("b",))
    path.write_text('{"key": "c", "error": "x\u2028y"}\n{"key": "c", "values": {"y": 1}}\n')
    with pytest.raises(ManualResultsError, match="line 2: key 'c' appears again"):
        oracle.import_results(path)


def test_results_are_final_and_cancel_withdraws(tmp_path):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    handles = oracle.submit(_requests())
    (tmp_path / "r.csv").write_text("key,y\na,1.0\n")
    oracle.import_results(tmp_path / "r.csv")
    (tmp_path / "r2.csv").write_text("key,y\na,2.0\n")
    with pytest.raises(ManualResultsError, match="line 2: key 'a' already has a different result"):
        oracle.import_results(tmp_path / "r2.csv")
    oracle.cancel(handles[1:2])
    assert [r.status for r in oracle.poll(handles)] == ["succeeded", "cancelled", "pending"]
    assert "b" not in oracle.pending_path.read_text()


# ---- limits: file size, cell size, column counts, nesting --------------------------------------
@pytest.mark.parametrize("text, line, message", [
    ("key,y\na,1\nb\n", 3, "fewer cells than header columns (1 cells, 2 columns; missing ['y'])"),
    ("key,y,error\na,1\n", 2, "fewer cells than header columns"),
    ("key,y\na,1,2,3\n", 2, "more cells than header columns (4 cells, 2 columns)"),
    ("key,y,y\na,1,2\n", 1, "header names column(s) ['y'] more than once"),
])
def test_csv_column_counts_are_checked_per_line(tmp_path, text, line, message):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    handles = oracle.submit(_requests())
    path = tmp_path / "r.csv"
    path.write_text(text)
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(path)
    assert info.value.problems[0][0] == line and message in info.value.problems[0][1], info.value
    assert [r.status for r in oracle.poll(handles)] == ["pending"] * 3  # nothing imported


def test_a_huge_csv_cell_is_refused_with_its_line(tmp_path):
    from oracles.manual import MAX_CELL_CHARS
    oracle = ManualOracle(tmp_path, objectives=("y",))
    handles = oracle.submit(_requests())
    path = tmp_path / "r.csv"
    path.write_text(f"key,y,error\na,1,\nb,,{'x' * (MAX_CELL_CHARS + 10)}\nc,2,\n")
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(path)
    assert info.value.problems == [(3, info.value.problems[0][1])]
    assert "longer than" in info.value.problems[0][1] and "Error" not in str(info.value)
    assert [r.status for r in oracle.poll(handles)] == ["pending"] * 3  # nothing imported


def test_an_oversized_results_file_is_refused_before_reading(tmp_path, monkeypatch):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    oracle.submit(_requests())
    path = tmp_path / "r.csv"
    with path.open("wb") as f:  # 200 MB claimed, sparse: no disk used, never read
        f.truncate(200 * 1024 * 1024)

    def never(*_a, **_k):
        raise AssertionError("the file was read")
    monkeypatch.setattr(type(path), "read_text", never)
    with pytest.raises(ManualResultsError, match="209,715,200 bytes, more than"):
        oracle.import_results(path)


def test_deeply_nested_json_results_are_refused(tmp_path):
    oracle = ManualOracle(tmp_path, objectives=("y",))
    oracle.submit(_requests())
    path = tmp_path / "r.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ManualResultsError) as info:
        oracle.import_results(path)
    assert info.value.problems[0][0] == 1
