"""``python -m oracles.labsim``: serve the lab job API over a simulated oracle.

    python -m oracles.labsim --function branin --port 0 --latency 0.5 --noise-std 0.1 \
        --fault 500=0.05 --fault drop=0.02 --state /tmp/lab.json --token-env LAB_TOKEN
    python -m oracles.labsim --function manifold --port 8765          # the bundled `manifold` prior
    python -m oracles.labsim --function digits --pixel-range signed   # the bundled `digits` prior

Functions, the design shape each takes and the objective name each reports (a campaign's
``[[objectives]]`` name must match it):

* ``manifold``: ``ManifoldOracle``, designs of shape ``(16,)`` (``--dim`` changes it),
  objective ``value``;
* ``digits``: ``DigitScorerOracle``, designs of shape ``(1, 8, 8)`` (``(8, 8)`` and ``(64,)`` too),
  objective ``p_target`` (whatever ``--output``: ``p``, ``log_p`` or ``log_odds``);
  ``--pixel-range signed`` for the bundled digits prior's `[-1, 1]` pixels;
* any BoTorch test function (``branin``, ``hartmann6``, ``ackley``, ...): designs of shape
  ``(dim,)`` in the unit cube, objective ``y``.

``--objective NAME`` renames the objective. The first line on stdout is
``labsim listening on http://HOST:PORT``, the second names the function, the design shape and the
objectives (``GET /health`` reports the same as ``design_shape`` / ``objectives``, unless
``--no-describe``); logs go to stderr. The token is read from an environment variable or a file,
never from the command line (argv is visible to every user of the machine).
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

FUNCTIONS_HELP = """functions (design shape -> objective):
  manifold        (16,) or (--dim,)       -> value
  digits          (1, 8, 8)               -> p_target  (--pixel-range signed for the bundled prior)
  branin, ...     (dim,) in [0, 1]^dim    -> y
"""


def build_parser() -> argparse.ArgumentParser:
    """The simulator's command line."""
    p = argparse.ArgumentParser(prog="python -m oracles.labsim",
                                description=__doc__.split("\n\n")[0], epilog=FUNCTIONS_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--function", default="branin",
                   help="'manifold' (16-d, objective 'value'), 'digits' (1x8x8 images, objective "
                        "'p_target') or a BoTorch test function (branin, hartmann6, ackley, levy, "
                        "...; objective 'y')")
    p.add_argument("--dim", type=int, default=None,
                   help="dimension, for BoTorch functions that take one and for manifold")
    p.add_argument("--objective", default=None,
                   help="name of the objective (default: value / p_target / y, as above)")
    p.add_argument("--target-digit", type=int, default=3, help="for --function digits")
    p.add_argument("--pixel-range", choices=("unit", "signed"), default=None,
                   help="digits: pixels in [0, 1] (unit) or [-1, 1] (signed: the bundled digits "
                        "prior's designs); default unit")
    p.add_argument("--output", choices=("p", "log_p", "log_odds"), default=None,
                   help="digits: the objective is p(target), log p(target) or its log-odds; "
                        "default p")
    p.add_argument("--off-data-penalty", type=float, default=None,
                   help="digits: weight w of the penalty w*max(0, d - r)^2 for images at distance "
                        "d from every training image (0: none)")
    p.add_argument("--off-data-radius", type=float, default=None,
                   help="digits: the radius r (default: 95%% leave-one-out distance of the data)")
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
    p.add_argument("--no-describe", action="store_true",
                   help="GET /health answers only {\"status\": \"ok\"}, without design_shape / "
                        "objectives: a lab that does not describe itself, so tiltloop cannot check "
                        "the design shape before the campaign starts")
    p.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    return p


def build_oracle(args: argparse.Namespace) -> SimulatedOracle:
    """The simulated oracle named by ``--function``.

    Raises:
        OracleConfigError: an unknown function or a bad option (names it).
    """
    common: dict = dict(latency_s=args.latency, noise_std=args.noise_std,
                        failure_rate=args.failure_rate, seed=args.seed)
    if args.objective is not None:
        common["objective"] = args.objective
    digits_only = {"--pixel-range": args.pixel_range, "--output": args.output,
                   "--off-data-penalty": args.off_data_penalty,
                   "--off-data-radius": args.off_data_radius}
    given = [flag for flag, value in digits_only.items() if value is not None]
    if args.function != "digits" and given:
        raise OracleConfigError(f"{', '.join(given)} only apply to --function digits, not "
                                f"--function {args.function}")
    if args.function == "manifold":
        from oracles.simulated.manifold import ManifoldOracle, ManifoldProblem
        # the problem's own seed stays 0: it is the manifold the bundled prior was trained on
        problem = ManifoldProblem() if args.dim is None else ManifoldProblem(dim=args.dim)
        return ManifoldOracle(problem, **common)
    if args.function == "digits":
        from oracles.simulated.digits import DigitScorerOracle
        return DigitScorerOracle(args.target_digit, output=args.output or "p",
                                 pixel_range=args.pixel_range or "unit",
                                 off_data_penalty=args.off_data_penalty or 0.0,
                                 off_data_radius=args.off_data_radius, **common)
    from oracles.simulated.botorch_functions import BoTorchFunctionOracle
    return BoTorchFunctionOracle(args.function, dim=args.dim, **common)


def describe_function(oracle: SimulatedOracle) -> str:
    """``manifold16: designs of shape (16,), objectives ['value']`` (the second stdout line)."""
    shape = oracle.design_shape
    shown = "any shape" if shape is None else f"shape {tuple(shape)}"
    return f"{oracle.name}: designs of {shown}, objectives {list(oracle.objectives)}"


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
                           tls_key=args.tls_key, describe=not args.no_describe)
    except OracleConfigError as exc:
        print(f"labsim: error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"labsim listening on {lab.url}", flush=True)
    print(f"labsim serves {describe_function(lab.store.oracle)}", flush=True)
    try:
        lab.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        lab._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
