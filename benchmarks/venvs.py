"""Reused virtualenvs: one per peer, from `benchmarks/requirements/<peer>.txt`, and one per
Conveyor commit for the A/B (`benchmarks.compare`).

A venv is rebuilt when what it was built from changes (its hash is stamped inside).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "requirements"
#: where the peers' virtualenvs live unless --venvs says otherwise (git-ignored)
DEFAULT_ROOT = HERE.parent / ".bench" / "venvs"

Pip = list[str]


def peers() -> list[str]:
    """Every peer with a requirements file, in a stable order."""
    return sorted(p.stem for p in REQUIREMENTS.glob("*.txt"))


def _built(env: Path, digest: str, install: Callable[[Pip], object]) -> Path:
    """`env`'s interpreter; the venv is made afresh and `install(pip)` run unless the
    stamp inside says it was built from `digest`."""
    python = env / "bin" / "python"
    stamp = env / "requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"building the virtualenv {env}", file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(env)
    install([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
    stamp.write_text(digest)
    return python


def python_of(peer: str, root: Path = DEFAULT_ROOT) -> Path:
    """The interpreter of `peer`'s virtualenv, built or refreshed first if needed."""
    requirements = REQUIREMENTS / f"{peer}.txt"
    if not requirements.exists():
        raise SystemExit(f"no peer {peer!r}: expected {requirements}")
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    return _built(
        root / peer, digest, lambda pip: subprocess.run([*pip, "-r", str(requirements)], check=True)
    )


def python_at(commit: str, constraints: str, root: Path = DEFAULT_ROOT) -> Path:
    """An interpreter with Conveyor as of `commit` installed (not editable), reused per commit.

    `constraints` (`name==version` lines) holds its dependencies at the versions of the
    environment it is compared with, so that Conveyor is the only difference.
    """
    digest = hashlib.sha256(f"{commit}\n{constraints}".encode()).hexdigest()

    def install(pip: Pip) -> None:
        with tempfile.TemporaryDirectory(prefix="conveyor-") as tmp:
            tree, pins = Path(tmp) / "tree", Path(tmp) / "constraints.txt"
            tree.mkdir()
            pins.write_text(constraints)
            # an export, not a worktree: the shared checkout's .git is left as it was
            archive = subprocess.run(
                ["git", "archive", commit], cwd=HERE.parent, check=True, capture_output=True
            )
            subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
            subprocess.run([*pip, "-c", str(pins), str(tree)], check=True)

    return _built(root / f"conveyor-{commit}", digest, install)


if __name__ == "__main__":
    for name in sys.argv[1:] or peers():
        print(python_of(name))
