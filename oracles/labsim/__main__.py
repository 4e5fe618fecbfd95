"""``python -m oracles.labsim``: serve the lab job API over a simulated oracle.

    python -m oracles.labsim --function branin --port 0 --latency 0.5 --noise-std 0.1 \
        --fault 500=0.05 --fault drop=0.02 --state /tmp/lab.json --token-env LAB_TOKEN

The first line on stdout is ``labsim listening on http://HOST:PORT``; logs go to stderr.
The token is read from an environment variable or a file, never from the command line (argv is
visible to every user of the machine).
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from oracles.errors import OracleConfigError
from oracles.labsim.faults import FAULT_KINDS, FaultPlan
from oracles.labsim.server import LabSimulator
from oracles.simulated.base import SimulatedOracle


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line."""
    p = argparse.ArgumentParser(prog="python -m oracles.labsim", description=__doc__.splitlines()[0])
    p.add_argument("--function", default="branin",
                   help="a BoTorch test function (branin, hartmann6, ackley, levy, ...) or 'digits'")
    p.add_argument("--dim", type=int, default=None, help="dimension, for functions that take one")
    p.add_argument("--target-digit", type=int, default=3, help="for --function digits")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    p.add_argument("--latency", type=float, default=0.0, help="seconds per job")
    p.add_argument("--noise-std", type=float, default=0.0)
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fault", action="append", default=[], metavar="KIND=RATE",
                   help=f"inject a fault at a rate; KIND in {FAULT_KINDS}")
    p.add_argument("--fault-script", default="", help="comma list for the first requests, "
                   "e.g. '500,ok,drop'")
    p.add_argument("--fault-delay", type=float, default=2.0, help="seconds a 'timeout' reply waits")
    p.add_argument("--retry-after", type=float, default=0.0, help="Retry-After sent with a 429")
    p.add_argument("--token-env", default=None, help="environment variable holding the token")
    p.add_argument("--token-file", type=Path, default=None, help="file holding the token")
    p.add_argument("--tls-cert", type=Path, default=None, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, default=None, help="PEM private key of --tls-cert")
    p.add_argument("--state", type=Path, default=None, help="JSON file persisting the jobs")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    return p


def build_oracle(args: argparse.Namespace) -> SimulatedOracle:
    """The simulated oracle named by ``--function``."""
    common = dict(latency_s=args.latency, noise_std=args.noise_std,
                  failure_rate=args.failure_rate, seed=args.seed)
    if args.function == "digits":
        from oracles.simulated.digits import DigitScorerOracle
        return DigitScorerOracle(args.target_digit, **common)
    from oracles.simulated.botorch_functions import BoTorchFunctionOracle
    return BoTorchFunctionOracle(args.function, dim=args.dim, **common)


def read_token(env_name: str | None, path: Path | None) -> str | None:
    """The token from ``$env_name`` or ``path``; errors never show it."""
    if env_name:
        token = os.environ.get(env_name)
        if not token:
            raise OracleConfigError(f"--token-env {env_name}: the variable is unset or empty")
        return token.strip()
    if path:
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise OracleConfigError(f"--token-file {path}: cannot read it ({exc.strerror})") from None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT / SIGTERM."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    try:
        faults = FaultPlan.parse(args.fault, args.fault_script, seed=args.seed,
                                 delay_s=args.fault_delay, retry_after_s=args.retry_after)
        lab = LabSimulator(build_oracle(args), host=args.host, port=args.port, faults=faults,
                           token=read_token(args.token_env, args.token_file),
                           state_path=args.state, tls_cert=args.tls_cert,
                           tls_key=args.tls_key)
    except OracleConfigError as exc:
        print(f"labsim: error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"labsim listening on {lab.url}", flush=True)
    try:
        lab.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        lab._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
