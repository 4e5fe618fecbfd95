"""Everything that talks to the outside world that scores designs.

The protocol (``oracles.protocol``): ``submit(requests) -> handles``, ``poll(handles) ->
results``, ``cancel``, ``close``; idempotent per key; every objective maximized. Oracle kinds:
HTTP lab API (``oracles.http``), command (``oracles.command``), callable / sync function
(``oracles.callable``, ``oracles.sync``), manual ask/tell (``oracles.manual``), simulated
(``oracles.simulated``) and the lab simulator (``oracles.labsim``). ``build_oracle(kind, options)``
builds any of them from a campaign file, wrapped in the ``SafeOracle`` shim.

Heavy modules (torch, sklearn, httpx) load only when their oracle kind is used.
"""
from oracles.errors import (ManualResultsError, OracleConfigError, OracleError, OracleRejectedError,
                            OracleReplyError, OracleTransientError)
from oracles.factory import build_oracle, oracle_config, register_oracle_kind
from oracles.protocol import (STATUSES, TERMINAL_STATUSES, Evaluation, JobHandle, Oracle,
                              QueryRequest, QueryResult, Status)
from oracles.safe import SafeOracle
from oracles.sync import SyncOracle

__all__ = [
    "STATUSES", "TERMINAL_STATUSES", "Evaluation", "JobHandle", "ManualResultsError", "Oracle",
    "OracleConfigError", "OracleError", "OracleRejectedError", "OracleReplyError",
    "OracleTransientError", "QueryRequest", "QueryResult", "SafeOracle", "Status", "SyncOracle",
    "build_oracle", "oracle_config", "register_oracle_kind",
]
