"""The flow service: a Litestar app over an in-memory model made durable by a group-committing store."""

from flowlab.server.app import create_app

__all__ = ["create_app"]
