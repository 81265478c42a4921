"""The long workflow proofs: `python -m tests.workflows [--only chord,chain]`.

At the issue's sizes: a chord of 1,000 children and a chain of 50 steps, each while 4
worker subprocesses are SIGKILLed and replaced (10 kills). Prints each proof's figures and
violations; exit code 1 if any proof failed.
"""

from __future__ import annotations

import argparse
import sys

from tests.workflows.soak import run_proofs


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.workflows")
    parser.add_argument("--only", default="chord,chain", help="proofs to run, comma-separated")
    passed = run_proofs(parser.parse_args().only.split(","))
    print("OK" if passed else "FAILED")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
