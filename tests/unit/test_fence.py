"""channels_api.fence: every internal of another package webchannel relies on is declared,
documented and present, and no other module reaches into another package's private names."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import inspect
import re
from pathlib import Path

import pytest

from channels_api import fence as compat
from channels_api.fence import Internal

PACKAGE = Path(compat.__file__).parent
SERVER = PACKAGE / "server"


def source_of(module: str) -> Path:
    return PACKAGE.joinpath(*module.split(".")).with_suffix(".py")


def docstring(module: str) -> str:
    text = ast.get_docstring(ast.parse(source_of(module).read_text(encoding="utf-8")))
    assert text, f"channels_api.{module} has no docstring"
    return text


def test_every_module_of_the_server_package_is_checked() -> None:
    modules = {f"server.{path.stem}" for path in SERVER.glob("*.py")} - {"server.__init__"}
    assert modules <= set(compat.MODULES)
    assert docstring("server.__init__")
    assert docstring("fence")


def _third_party_reaches(path: Path) -> list[str]:
    """``name._private`` reads, and ``from package import _private``, on names another package gave."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    foreign: set[str] = set()
    found: list[str] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and not node.module.startswith("channels_api")
        ):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"from {node.module} import {alias.name}")
                foreign.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("channels_api"):
                    foreign.add((alias.asname or alias.name).split(".")[0])
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


def test_no_module_outside_the_fence_reaches_into_another_packages_private_names() -> None:
    fenced = {source_of(module) for module in compat.MODULES}
    reaches = {
        str(path.relative_to(PACKAGE)): found
        for path in PACKAGE.rglob("*.py")
        if path not in fenced and (found := _third_party_reaches(path))
    }
    assert reaches == {}, "declare these in the module's INTERNALS and add it to channels_api.fence.MODULES"


@pytest.mark.parametrize("module", compat.MODULES)
def test_each_declared_internal_is_named_in_its_modules_docstring(module: str) -> None:
    text = docstring(module)
    for internal in compat.declared(module):
        assert internal.attribute in text, f"{module}: the docstring does not name {internal.attribute}"
        owner = internal.path.rsplit(".", 1)[-1]
        assert owner in text, f"{module}: the docstring does not name {owner} (for {internal.name})"


@pytest.mark.parametrize("module", compat.MODULES)
def test_the_declarations_read_from_source_are_the_modules_own(module: str) -> None:
    imported = importlib.import_module(f"channels_api.{module}")
    assert compat.declared(module) == tuple(Internal(*entry) for entry in imported.INTERNALS)


def test_every_declared_internal_is_present_in_the_installed_versions() -> None:
    assert compat.problems(include_redis=True) == []


def test_the_check_passes_silently_on_the_installed_versions() -> None:
    compat.exit_if_incompatible(include_redis=True)


class _Base:
    def __init__(self) -> None:
        self.set_in_base = 1


class _Child(_Base):
    def start(self) -> None:
        self.set_in_start = 2


@pytest.mark.parametrize(
    ("internal", "absent"),
    [
        (Internal("x", f"{__name__}._Child", "start"), None),
        (Internal("x", f"{__name__}._Child", "set_in_base", "__init__"), None),
        (Internal("x", f"{__name__}._Child", "set_in_start", "start"), None),
        (Internal("x", f"{__name__}._Child", "set_in_start", "__init__"), f"{__name__}._Child.set_in_start"),
        (Internal("x", f"{__name__}._Child", "never_set", "__init__"), f"{__name__}._Child.never_set"),
        (Internal("x", f"{__name__}._Child", "_missing"), f"{__name__}._Child._missing"),
        (Internal("x", f"{__name__}._Gone", "start"), f"{__name__}._Gone"),
        (Internal("x", "twisted.internet.no_such_module", "Server"), "twisted.internet.no_such_module"),
        (Internal("x", "no_such_package.module", "thing"), "no_such_package"),
        (Internal("x", f"{__name__}._Child.start", "__name__"), None),
        (Internal("x", "django.utils.log", "_has_been_logged", "log_response"), None),
        (Internal("x", "django.utils.log", "_never_read_there", "log_response"), "django.utils.log._never_read_there"),
    ],
    ids=[
        "method",
        "instance-attribute-of-a-base",
        "instance-attribute-of-another-method",
        "instance-attribute-not-in-that-method",
        "instance-attribute-never-set",
        "class-attribute",
        "class",
        "module",
        "package",
        "attribute-of-an-attribute",
        "name-a-module-function-reads",
        "name-a-module-function-does-not-read",
    ],
)
def test_missing_names_what_is_gone(internal: Internal, absent: str | None) -> None:
    assert compat.missing(internal) == absent


def test_a_module_that_fails_to_import_is_named_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_dependency_for_compat.py").write_text("from os import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    absent = compat.missing(Internal("x", "broken_dependency_for_compat.Thing", "attr"))
    assert absent is not None
    assert absent.startswith("broken_dependency_for_compat (importing it fails: cannot import name 'no_such_name'")


def test_a_missing_internal_prints_one_line_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = Internal("twisted", "twisted.internet.tcp.Server", "_renamedTempDataLen", "__init__")
    monkeypatch.setattr(compat, "declared", lambda module: (gone,) if module == "server.ws_protocol" else ())
    with pytest.raises(SystemExit) as exit_info:
        compat.exit_if_incompatible(include_redis=False)
    assert exit_info.value.code == 2
    version = importlib.metadata.version("twisted")
    assert capsys.readouterr().err == (
        f"webchannel: incompatible dependency: twisted {version} has no "
        "twisted.internet.tcp.Server._renamedTempDataLen\n"
    )


def test_several_missing_internals_are_still_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tuple(Internal("autobahn", "autobahn.websocket.protocol.WebSocketProtocol", f"_gone{i}") for i in range(3))
    monkeypatch.setattr(compat, "declared", lambda module: gone if module == "server.ws_protocol" else ())
    with pytest.raises(SystemExit):
        compat.exit_if_incompatible(include_redis=False)
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.endswith("has no autobahn.websocket.protocol.WebSocketProtocol._gone0 (and 2 more)\n")


def test_the_redis_layers_internals_are_checked_only_with_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = (Internal("channels-redis", "channels_redis.pubsub.RedisPubSubChannelLayer", "_renamed"),)
    monkeypatch.setattr(compat, "declared", lambda module: gone if module == "server.redis_layer" else ())
    assert compat.problems(include_redis=False) == []
    assert len(compat.problems(include_redis=True)) == 1


def test_the_lean_connection_setup_provides_every_attribute_autobahn_would_set() -> None:
    """ws_protocol replaces autobahn's ``_connectionMade`` and gives class defaults instead of
    per-connection copies; an attribute a new autobahn sets there must not be missing."""
    from autobahn.websocket.protocol import WebSocketProtocol

    from channels_api.server.ws_protocol import WebchannelWebSocketProtocol

    autobahn_sets = set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(WebSocketProtocol._connectionMade)))
    lean_sets = set(re.findall(r"self\.(\w+)\s*=", inspect.getsource(WebchannelWebSocketProtocol._connectionMade)))
    options = set(WebchannelWebSocketProtocol.CONFIG_ATTRS)
    missing = {
        name
        for name in autobahn_sets - lean_sets - options
        if not hasattr(WebchannelWebSocketProtocol, name)
        and name != "serverConnectionDropTimeoutCall"  # set for clients only
    }
    assert not missing, f"autobahn's _connectionMade sets {sorted(missing)}, which the lean one does not provide"
