"""A small incremental parser for text/event-stream, shared by the sync and async clients."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class SSEMessage:
    event: str
    data: str
    id: str | None


class SSEParser:
    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_id: str | None = None

    def reset(self) -> None:
        """Forget a half-received message (the connection dropped mid-way); keep the last complete id."""
        self._data, self._event, self._id = [], "", None

    def feed_line(self, line: str) -> SSEMessage | None:
        """Feed one line (without its newline); returns a message when a blank line completes one."""
        if line == "":
            if not self._data and not self._event:
                return None
            msg = SSEMessage(event=self._event or "message", data="\n".join(self._data), id=self._id)
            if self._id is not None:
                self.last_id = self._id
            self._data, self._event, self._id = [], "", None
            return msg
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None
