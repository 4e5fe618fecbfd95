"""Which code-executing oracles (``kind = "callable"`` / ``"command"``) may run on this host.

A ``callable`` oracle imports and calls a Python function; a ``command`` oracle runs a program.
``tiltloop resume``, ``tiltloop serve`` and a driver that reloads a new config version rebuild
the oracle from the config stored in the DATABASE, so whoever can write that table could run code
on the host. The rule, checked in one place (:func:`check_oracle_allowed`, called by
``config_oracle.build`` before any such oracle is built):

1. **The operator's own file is consent for that process.** A config the operator named on the
   command line (``tiltloop run FILE``, ``tiltloop campaign config NAME FILE``; any
   ``load_config(path)``) records its exact ``[oracle]`` table as consented
   (:func:`consent`); the same oracle config may then run in that process, also when the
   driver reads it back from the database. Nothing about this is stored: a later process
   (``resume``, ``serve``) must be allowed by rule 2. The consent is for the whole table, so a
   stored version that changes ``argv``, ``env`` or ``target`` is not covered.
2. **Otherwise, a host-local allowlist** — never read from the database:

   - ``TILTLOOP_ALLOW_CALLABLES``: comma-separated module prefixes; ``pkg.oracles`` allows
     ``pkg.oracles:f`` and ``pkg.oracles.sub:g``, not ``pkg.oraclesx:h``;
   - ``TILTLOOP_ALLOW_COMMANDS``: comma-separated executables; an entry matches ``argv[0]`` as
     written, or — an absolute path — the file ``argv[0]`` resolves to (``PATH`` / ``cwd``);
   - the file ``~/.config/tiltloop/allow.toml`` (or ``$TILTLOOP_ALLOW_FILE``):
     ``callables = ["pkg.oracles"]`` and ``commands = ["/opt/lab/bin/sim"]``; merged with the
     environment. ``"*"`` allows any (the operator's explicit choice).

   An allowlisted ``command`` whose stored ``env`` sets a variable that changes WHICH code runs
   (``PATH``, ``LD_*``, ``DYLD_*``, ``PYTHON*``, ``BASH_ENV``, ...) is still refused: allowing
   ``/usr/bin/python3`` must not allow ``LD_PRELOAD=/tmp/x.so``. Allowing an interpreter allows
   every script its arguments name: allow the simulation's own executable where possible.

A refused config raises :class:`OracleNotAllowed` (an ``OracleConfigError``: the CLI prints it
and exits 2) before the oracle is built, so nothing is imported, run or sent.

    >>> consent(config.oracle)              # doctest: +SKIP  (load_config does this)
    >>> check_oracle_allowed(config.oracle)  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oracles.errors import OracleConfigError
from tiltloop.toml import tomllib

#: The oracle kinds that run code on the host.
CODE_KINDS = ("callable", "command")
ENV_CALLABLES = "TILTLOOP_ALLOW_CALLABLES"
ENV_COMMANDS = "TILTLOOP_ALLOW_COMMANDS"
ENV_FILE = "TILTLOOP_ALLOW_FILE"
DEFAULT_FILE = "~/.config/tiltloop/allow.toml"
#: the allowlist file is a few lines; anything bigger is not one
_MAX_FILE_BYTES = 64 * 1024
#: environment variables that change which code a program runs (its loader, interpreter, shell)
_HIJACK_ENV = re.compile(r"^(PATH|LD_\w*|DYLD_\w*|PYTHON\w*|BASH_ENV|ENV|NODE_OPTIONS|NODE_PATH|"
                         r"PERL5OPT|PERL5LIB|PERLLIB|RUBYOPT|RUBYLIB|JAVA_TOOL_OPTIONS|"
                         r"_JAVA_OPTIONS|GCONV_PATH|IFS)$")

_consented: set[str] = set()
_lock = threading.Lock()


class OracleNotAllowed(OracleConfigError):
    """A code-executing oracle this host does not allow (the message says how to allow it)."""


@dataclass(frozen=True)
class Allowlist:
    """The host's allowlist: module prefixes and executables (``"*"``: any)."""

    callables: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()
    file: str | None = None  # the file read, if any (named in messages)


def _key(oracle: Any) -> str:
    return json.dumps(oracle.model_dump(mode="json"), sort_keys=True)


def consent(oracle: Any) -> None:
    """Record that the operator gave this exact ``[oracle]`` table (from a file they named)."""
    if getattr(oracle, "kind", None) in CODE_KINDS:
        with _lock:
            _consented.add(_key(oracle))


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _strings(data: dict[str, Any], field: str, path: Path) -> tuple[str, ...]:
    value = data.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OracleConfigError(f"allowlist {path}: `{field}` must be a list of strings, e.g. "
                                f'{field} = ["..."]')
    return tuple(v.strip() for v in value if v.strip())


def load_allowlist(environ: dict[str, str] | None = None) -> Allowlist:
    """The allowlist from the environment and the allowlist file (see the module doc).

    Raises:
        OracleConfigError: the file is unreadable, too big, not TOML or has other fields.
    """
    env = os.environ if environ is None else environ
    callables = _split(env.get(ENV_CALLABLES, ""))
    commands = _split(env.get(ENV_COMMANDS, ""))
    explicit = env.get(ENV_FILE)
    path = Path(explicit or DEFAULT_FILE).expanduser()
    if not path.exists():
        if explicit:
            raise OracleConfigError(f"${ENV_FILE} names {path}, which does not exist; create it "
                                    "or unset the variable")
        return Allowlist(callables, commands)
    try:
        if path.stat().st_size > _MAX_FILE_BYTES:
            raise OracleConfigError(f"allowlist {path} is larger than {_MAX_FILE_BYTES} bytes; "
                                    "it should hold two short lists")
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OracleConfigError(f"allowlist {path} cannot be read: {exc}") from None
    extra = sorted(set(data) - {"callables", "commands"})
    if extra:
        raise OracleConfigError(f"allowlist {path}: unknown field(s) {extra}; it holds "
                                "`callables` and `commands`")
    return Allowlist(callables + _strings(data, "callables", path),
                     commands + _strings(data, "commands", path), str(path))


def _module_allowed(target: str, prefixes: Iterable[str]) -> bool:
    module = target.partition(":")[0]
    return any(p == "*" or module == p or module.startswith(p + ".") for p in prefixes)


def _resolve(argv0: str, cwd: Any, path_env: str | None) -> str | None:
    if "/" in argv0:
        base = Path(str(cwd)) if cwd else Path.cwd()
        return os.path.realpath(base / argv0)
    found = shutil.which(argv0, path=path_env)
    return os.path.realpath(found) if found else None


def _command_allowed(argv0: str, cwd: Any, entries: Iterable[str]) -> bool:
    resolved = _resolve(argv0, cwd, os.environ.get("PATH"))
    for entry in entries:
        if entry == "*" or entry == argv0:
            return True
        if entry.startswith("/") and resolved is not None \
                and os.path.realpath(entry) == resolved:
            return True
    return False


def check_oracle_allowed(oracle: Any, *, environ: dict[str, str] | None = None) -> None:
    """Refuse a ``callable`` / ``command`` oracle neither consented to nor allowlisted here.

    Raises:
        OracleNotAllowed: naming the kind, the target and how to allow it.
    """
    kind = getattr(oracle, "kind", None)
    if kind not in CODE_KINDS:
        return
    with _lock:
        if _key(oracle) in _consented:
            return
    allow = load_allowlist(environ)
    where = (f"the allowlist file {allow.file}" if allow.file
             else f"{DEFAULT_FILE} (or the file ${ENV_FILE} names)")
    why = ("it was not given by the operator in a config file in this process (a config read "
           "back from the database, e.g. by `tiltloop resume` or `tiltloop serve`, needs the "
           "host's allowlist: whoever can write the database must not run code here)")
    if kind == "callable":
        target = str(oracle.target)
        if _module_allowed(target, allow.callables):
            return
        module = target.partition(":")[0]
        raise OracleNotAllowed(
            f"oracle kind 'callable' with target {target!r} is not allowed on this host: {why}; "
            f"allow it with {ENV_CALLABLES}={module} (comma-separated module prefixes) or "
            f'`callables = ["{module}"]` in {where}, or start it yourself with `tiltloop run FILE`')
    argv0 = str(oracle.argv[0])
    if not _command_allowed(argv0, getattr(oracle, "cwd", None), allow.commands):
        raise OracleNotAllowed(
            f"oracle kind 'command' running {argv0!r} (argv[0]) is not allowed on this host: "
            f"{why}; allow it with {ENV_COMMANDS}={argv0} (comma-separated executables or "
            f'absolute paths) or `commands = ["{argv0}"]` in {where}, or start it yourself '
            "with `tiltloop run FILE`")
    hijack = sorted(k for k in (getattr(oracle, "env", None) or {}) if _HIJACK_ENV.match(str(k)))
    if hijack:
        raise OracleNotAllowed(
            f"oracle kind 'command' running {argv0!r} is allowlisted, but its stored `env` sets "
            f"{hijack}, which change(s) which code runs; remove them from oracle.env (set them "
            "in the environment of the tiltloop process instead), or start it yourself with "
            "`tiltloop run FILE`")
