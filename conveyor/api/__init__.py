"""The REST producer and admin API (FastAPI), with the simple API (`POST /task`, `GET /stats`)
of the Go services Conveyor descends from."""

from conveyor.api.app import create_app

__all__ = ["create_app"]
