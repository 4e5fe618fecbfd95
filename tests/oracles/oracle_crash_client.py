"""A client process for the crash tests: submits keys to a lab, prints the job ids, then waits
to be SIGKILLed. Usage: python oracle_crash_client.py URL KEY [KEY ...]"""
from __future__ import annotations

import json
import sys
import time

from oracle_helpers import requests_for
from oracles.http import HttpOracle, RetryPolicy

if __name__ == "__main__":
    url, keys = sys.argv[1], sys.argv[2:]
    print("started", flush=True)
    client = HttpOracle(url, timeout_s=30.0, retry=RetryPolicy(backoff_base_s=0.0))
    handles = client.submit(requests_for(keys))
    print(json.dumps([h.job_id for h in handles]), flush=True)
    time.sleep(600)
