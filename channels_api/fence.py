"""The fence around other packages' internals: every reach into one is declared, and checked.

Every module of webchannel that relies on a private (or undocumented) attribute or method of
another package (Daphne, Twisted, autobahn, channels, channels_redis, prometheus_client,
Django) declares it beside its docstring, in ``INTERNALS``, each as

    (distribution, dotted path of the object that has it, attribute[, where])

The optional ``where`` is for a name the object does not have itself: an instance attribute
counts as present when ``self.<attribute>`` appears in the source of that method of the
class or one of its bases (the method that sets it, usually ``__init__``); a name a function
of a module reads counts when it appears in that function's source. A source read is
reliable where building an instance is not (a Twisted transport needs a live socket).

:func:`problems` is the ``channels_api.E001`` system check (so ``manage.py check``,
``runserver`` and ``serve`` run it) and runs when an ASGI application is built
(:mod:`channels_api.asgi`, so ``daphne mysite.asgi:application`` does too):
:func:`exit_if_incompatible` prints one line, e.g.

    webchannel: incompatible dependency: twisted 26.10.0 has no twisted.internet.tcp.Server._tempDataLen

and exits with status 2, as a configuration error does, instead of letting the server
misbehave (a renamed ``HTTPChannel._path`` would make every publish over 16 KiB a 413).

The declarations are read from the modules' source, not imported, so a change that breaks
importing a module (a base class renamed) is reported in the same one line. The internals
of :mod:`.redis_layer` are checked only when Redis is configured (``redis.url`` or
``redis.sentinels``): only then is that module loaded, and importing channels_redis and
redis-py in every in-process deployment would cost each about 7 MiB and 50 ms for nothing.
The unit tests check them all.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

MODULES = (
    "server.daphne_server",
    "server.ws_protocol",
    "server.http_protocol",
    "server.direct_write",
    "server.redis_layer",
    "handler",
    "consumers",
    "problems",
    "supervisor",
    "metric_files",
)
"""Every module of webchannel that declares ``INTERNALS`` (``tests/unit/test_fence.py`` checks that
no other module reaches into another package's private names)."""
REDIS_MODULES = frozenset({"server.redis_layer"})
"""Modules loaded only with Redis configured."""


@dataclass(frozen=True)
class Internal:
    """One attribute of another package that a module of this package relies on."""

    distribution: str
    """The distribution that provides it, as pip names it: ``twisted``, ``channels-redis``."""
    path: str
    """The dotted path of the module or class that has it: ``twisted.internet.tcp.Server``."""
    attribute: str
    method: str | None = None
    """For a name the object does not have itself: the method (of a class) or function (of a
    module) whose source mentions it."""

    @property
    def name(self) -> str:
        return f"{self.path}.{self.attribute}"


def declared(module: str) -> tuple[Internal, ...]:
    """The ``INTERNALS`` of ``channels_api.<module>``, read from its source."""
    source = Path(__file__).parent.joinpath(*module.split(".")).with_suffix(".py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            names = [target.id for target in node.targets if isinstance(target, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            continue
        if "INTERNALS" in names and node.value is not None:
            return tuple(Internal(*entry) for entry in ast.literal_eval(node.value))
    raise LookupError(f"channels_api.{module} declares no INTERNALS")


def missing(internal: Internal) -> str | None:
    """The dotted name of what is missing for ``internal`` (the object or the attribute), or None."""
    owner, absent = _resolve(internal.path)
    if absent is not None:
        return absent
    if hasattr(owner, internal.attribute):
        return None
    if internal.method is not None and _mentioned(owner, internal.attribute, internal.method):
        return None
    return internal.name


def problems(*, include_redis: bool) -> list[str]:
    """One line per missing internal: ``<distribution> <version> has no <dotted name>``."""
    lines = []
    for module in MODULES:
        if module in REDIS_MODULES and not include_redis:
            continue
        for internal in declared(module):
            absent = missing(internal)
            if absent is not None:
                lines.append(f"{internal.distribution} {_version(internal.distribution)} has no {absent}")
    return lines


def exit_if_incompatible(*, include_redis: bool) -> None:
    """Before a server starts: print one line on stderr and exit 2 if an internal is missing."""
    found = problems(include_redis=include_redis)
    if found:
        _exit(found[0] + (f" (and {len(found) - 1} more)" if len(found) > 1 else ""))


def _exit(message: str) -> NoReturn:
    sys.stderr.write(f"webchannel: incompatible dependency: {message}\n")
    raise SystemExit(2)


def _resolve(path: str) -> tuple[Any, str | None]:
    """The object at ``path``, or ``(None, what is missing)``: the first dotted prefix that does
    not exist, or a module that exists but cannot be imported, with the reason."""
    parts = path.split(".")
    obj: Any = None
    end = 0
    for end in range(1, len(parts) + 1):
        name = ".".join(parts[:end])
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the module is there; something it imports is not
                return None, f"{name} (importing it fails: {exc})"
            break  # not a module: the rest are attributes
        except Exception as exc:  # it is there, but importing it fails
            return None, f"{name} (importing it fails: {exc})"
    else:
        return obj, None
    if obj is None:
        return None, parts[0]
    for index in range(end - 1, len(parts)):
        try:
            obj = getattr(obj, parts[index])
        except AttributeError:
            return None, ".".join(parts[: index + 1])
    return obj, None


def _mentioned(owner: Any, attribute: str, method: str) -> bool:
    """Whether ``self.<attribute>`` appears in ``method`` of ``owner`` (a class) or one of its
    bases; for a module, whether ``attribute`` appears in the source of its function ``method``."""
    if inspect.ismodule(owner):
        function = getattr(owner, method, None)
        try:
            return (
                function is not None
                and re.search(rf"\b{re.escape(attribute)}\b", inspect.getsource(function)) is not None
            )
        except (OSError, TypeError):
            return False
    pattern = re.compile(rf"\bself\.{re.escape(attribute)}\b")
    for klass in getattr(owner, "__mro__", ()):
        function = klass.__dict__.get(method)
        if function is None:
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):  # no source shipped: count it as missing rather than guess
            continue
        if pattern.search(source):
            return True
    return False


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"
