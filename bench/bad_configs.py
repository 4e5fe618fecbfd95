"""Run every generated bad campaign config through ``tiltloop run`` and print the counts.

    PYTHONPATH=$PWD .venv/bin/python bench/bad_configs.py [-v]

Prints ``N bad configs: N exit 2, 0 tracebacks, 0 rows written`` when every case is refused
cleanly; ``-v`` lists each case that was not, with what went wrong.
"""
from __future__ import annotations

import argparse
import collections
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bad_config_cases import bad_cases, run_case  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="list every failing case")
    args = parser.parse_args(argv)
    cases = bad_cases()
    outcomes = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(cases):
            folder = Path(tmp) / f"c{i}"
            folder.mkdir()
            outcomes.append(run_case(case, folder))
    exit2 = sum(o.code == 2 for o in outcomes)
    tracebacks = sum("Traceback" in o.out + o.err for o in outcomes)
    rows = sum(o.rows > 0 for o in outcomes)
    bad = [o for o in outcomes if o.problems]
    slowest = max(outcomes, key=lambda o: o.elapsed_s)
    print(f"{len(cases)} bad configs: {exit2} exit 2, {tracebacks} tracebacks, {rows} rows written")
    by_cat = collections.Counter(o.case.category for o in outcomes)
    print("by category: " + ", ".join(f"{k} {v}" for k, v in sorted(by_cat.items())))
    print(f"{len(bad)} with problems; slowest case {slowest.elapsed_s:.2f} s ({slowest.case.id})")
    for o in bad if args.verbose else ():
        print(f"- {o.case.id}: " + "; ".join(o.problems))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
