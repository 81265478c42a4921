"""Names the naming rules refuse, shared by the tests of the rules and of their users."""

from __future__ import annotations

#: Names that would break the hash tag or the key layout, or are not names at all.
BAD_NAMES = [
    "{emails}",
    "em{ails",
    "emails}",
    "a:b",
    ":",
    "two words",
    " emails",
    "emails ",
    "tab\tname",
    "emails\n",
    "",
]
#: Key prefixes refused: the same troubles, and one character over the limit.
BAD_PREFIXES = ["con{veyor", "con}veyor", "a:b", "two words", "conveyor\n", "", "p" * 33]
