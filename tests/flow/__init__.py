"""Proofs of flow control with real worker subprocesses on a real redis-server.

The pytest suite (test_flow_control.py) runs each proof small; `python -m tests.flow` runs
them at the sizes of the issue (see __main__.py).
"""
