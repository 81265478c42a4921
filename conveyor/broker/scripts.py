"""The Lua scripts, loaded once from `lua/*.lua` and called by SHA."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from conveyor.broker.keys import DEFAULT_BAND_END, DEFAULT_BAND_START, PRIORITY_BAND
from conveyor.events import EVENTS_MAX_LEN
from conveyor.flow import RATE_SLIP_MS
from conveyor.model import ATTEMPT_HISTORY
from conveyor.options import PRIORITY_RANGE

#: A value Redis accepts as an argument.
Arg = str | bytes | int | float
#: Numbers the scripts share with Python, each defined once on the Python side; every
#: script starts with a `local NAME = value` line for each.
CONSTANTS = {
    "PRIORITY_BAND": PRIORITY_BAND,
    "DEFAULT_BAND_START": DEFAULT_BAND_START,
    "DEFAULT_BAND_END": DEFAULT_BAND_END,
    "MIN_PRIORITY": PRIORITY_RANGE[0],
    "MAX_PRIORITY": PRIORITY_RANGE[-1],
    "ATTEMPT_HISTORY": ATTEMPT_HISTORY,
    "RATE_SLIP": RATE_SLIP_MS,
    "EVENTS_MAX_LEN": EVENTS_MAX_LEN,
}
#: The helpers prepended to every script (`lua/prelude.lua`); not a script itself.
PRELUDE = "prelude.lua"


@dataclass(frozen=True, slots=True)
class Script:
    """One Lua script and its SHA1, the name under which Redis caches it."""

    name: str
    source: bytes
    sha: str


@dataclass(frozen=True, slots=True)
class Call:
    """One command to send: a script call (EVALSHA) or a plain command.

    `route` names a key whose node must answer a keyless command in a Redis Cluster
    (e.g. CLIENT LIST where the workers' presence connections block); `node` names the
    master (host:port) that must answer one that is per node (SCAN, INFO, CONFIG: a tool
    asks each master in turn). A standalone Redis ignores both.
    """

    args: tuple[Arg, ...]
    script: Script | None = field(default=None)
    route: str | None = field(default=None)
    node: str | None = field(default=None)

    @classmethod
    def script_call(cls, script: Script, keys: list[str], argv: list[Arg]) -> Call:
        """EVALSHA of `script`: every key travels in KEYS, as the Redis docs require."""
        return cls(("EVALSHA", script.sha, len(keys), *keys, *argv), script)

    @classmethod
    def command(cls, *args: Arg, route: str | None = None, node: str | None = None) -> Call:
        """A plain Redis command; `route` and `node`: see the class."""
        return cls(args, route=route, node=node)


@cache
def load_scripts() -> dict[str, Script]:
    """All scripts of the package, by file name without `.lua`.

    A script is sent as one text: the constants, the prelude's helpers it calls, then its
    own file. Its SHA is taken over that text, the one SCRIPT LOAD caches; line numbers in
    a script's error replies count from the top of it.
    """
    folder = resources.files("conveyor.broker").joinpath("lua")
    constants = "".join(f"local {name} = {value}\n" for name, value in CONSTANTS.items())
    helpers = prelude_helpers(folder.joinpath(PRELUDE).read_text())
    calls = {name: _called(text, helpers) for name, text in helpers.items()}
    scripts = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".lua") and entry.name != PRELUDE:
            body = entry.read_text()
            used = needed(_called(body, helpers), calls)
            kept = "".join(text for name, text in helpers.items() if name in used)
            source = (constants + kept + body).encode()
            name = entry.name.removesuffix(".lua")
            scripts[name] = Script(name, source, hashlib.sha1(source).hexdigest())
    return scripts


def prelude_helpers(prelude: str) -> dict[str, str]:
    """The prelude's helpers in order: name -> its text (the comments above it, the
    function). Each is a top-level `local function` closed by an `end` at column 0."""
    helpers = {}
    for chunk in re.split(r"(?<=\nend\n)", prelude):
        found = re.search(r"^local function (\w+)", chunk, re.M)
        if found:
            helpers[found[1]] = chunk
    return helpers


def needed(called: set[str], calls: dict[str, set[str]]) -> set[str]:
    """The helpers a script calls (`called`), and those they call in turn (`calls`). A
    defined Lua function costs a closure at every call of the script (about 0.05 µs each
    in Redis): a script carries only the ones it uses."""
    found: set[str] = set()
    todo = list(called)
    while todo:
        name = todo.pop()
        if name not in found:
            found.add(name)
            todo.extend(calls[name])
    return found


def _called(text: str, helpers: dict[str, str]) -> set[str]:
    """The helpers `text` names before a `(`: calls (and, harmlessly, a definition)."""
    return set(_CALL.findall(text)) & helpers.keys()


_CALL = re.compile(r"\b(\w+)\(")
