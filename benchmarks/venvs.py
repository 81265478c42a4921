"""One virtualenv per peer, built from `benchmarks/requirements/<peer>.txt` and reused.

A venv is rebuilt when its requirements file changes (its hash is stamped inside).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "requirements"
#: where the peers' virtualenvs live unless --venvs says otherwise (git-ignored)
DEFAULT_ROOT = HERE.parent / ".bench" / "venvs"


def peers() -> list[str]:
    """Every peer with a requirements file, in a stable order."""
    return sorted(p.stem for p in REQUIREMENTS.glob("*.txt"))


def python_of(peer: str, root: Path = DEFAULT_ROOT) -> Path:
    """The interpreter of `peer`'s virtualenv, built or refreshed first if needed."""
    requirements = REQUIREMENTS / f"{peer}.txt"
    if not requirements.exists():
        raise SystemExit(f"no peer {peer!r}: expected {requirements}")
    env = root / peer
    python = env / "bin" / "python"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = env / "requirements.sha256"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"building the {peer} virtualenv in {env}", file=sys.stderr)
    venv.EnvBuilder(clear=True, with_pip=True).create(env)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True)
    stamp.write_text(digest)
    return python


if __name__ == "__main__":
    for name in sys.argv[1:] or peers():
        print(python_of(name))
