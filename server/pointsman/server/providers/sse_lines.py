"""Complete lines out of a body that arrives in network-sized pieces."""

from __future__ import annotations


class LineSplitter:
    """Splits bytes into lines as they arrive, in time linear in the bytes:
    a line longer than one read (an 8 MiB delta arrives in hundreds) is
    joined once, when its newline comes, not copied again with every read."""

    __slots__ = ("_parts",)

    def __init__(self) -> None:
        self._parts: list[bytes] = []  # the start of a line still open

    def feed(self, data: bytes) -> list[bytes]:
        """The lines that `data` completes, without their newlines."""
        if b"\n" not in data:
            self._parts.append(data)
            return []
        if self._parts:
            self._parts.append(data)
            data = b"".join(self._parts)
            self._parts = []
        lines = data.split(b"\n")
        rest = lines.pop()  # an incomplete last line waits for the next read
        if rest:
            self._parts.append(rest)
        return lines
