"""The uvicorn server of `conveyor api` and `conveyor dashboard` (imported only by them)."""

from __future__ import annotations

import socket

import click
import uvicorn


class AnnouncingServer(uvicorn.Server):
    """uvicorn's server, printing one "listening on URL" line once it serves."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            click.echo(f"listening on {self.url}")
