"""The REST producer and admin API (FastAPI), compatible with the seeds' `POST /task`."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
