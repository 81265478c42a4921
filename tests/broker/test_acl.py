"""The ACL of broker/acl.py covers every command Conveyor sends, and the docs show it."""

from __future__ import annotations

import re
from pathlib import Path

from conveyor.broker.acl import COMMANDS, acl_setuser, probes

ROOT = Path(__file__).resolve().parents[2]
BROKER = ROOT / "conveyor" / "broker"
#: Sent where Redis may refuse them, each handled as best effort (see the docs).
NOT_GRANTED = {"config|get", "client|list", "client|kill"}
#: Sent only to a Redis Cluster (its `queues`/`doctor` node map, the multi-queue wait's
#: unblock), which the ACL does not cover yet.
NOT_GRANTED |= {"cluster", "client|unblock"}
#: Commands whose ACL names include their subcommand.
CONTAINERS = {"CLIENT", "CONFIG", "SCRIPT", "ACL"}


def test_the_docs_show_the_acl_line_of_the_code() -> None:
    docs = (ROOT / "docs" / "redis-deployments.md").read_text()
    assert f"\n{acl_setuser()}\n" in docs


def test_every_command_of_the_lua_scripts_is_granted() -> None:
    called = re.compile(r"redis\.p?call\(\s*'([A-Za-z]+)'")
    used = {m.lower() for p in BROKER.glob("lua/*.lua") for m in called.findall(p.read_text())}
    assert used, "no redis.call found"
    assert used <= COMMANDS.keys(), used - COMMANDS.keys()


def test_every_command_of_the_python_side_is_granted() -> None:
    literal = re.compile(r'(?:Call\.command|command)\(\s*"([A-Z]+)"(?:,\s*"([A-Z]+)")?')
    used = set()
    for path in BROKER.glob("*.py"):
        for name, sub in literal.findall(path.read_text()):
            used.add(f"{name}|{sub}".lower() if name in CONTAINERS else name.lower())
    used |= {"blpop", "xread", "subscribe", "evalsha", "script|load", "client|setname"}
    assert used - NOT_GRANTED <= COMMANDS.keys(), used - NOT_GRANTED - COMMANDS.keys()


def test_each_probe_uses_the_prefix_only() -> None:
    for probe in probes("acme"):
        names = [a for a in probe.args if ":" in a]
        assert all(a.startswith("acme:") for a in names), probe
