"""Skip an ID3v2 tag at the start of an mp3 stream (files from encoders and players carry one)."""

from typing import Final

_HEADER: Final = 10


class Id3Skipper:
    """Feed the stream's first bytes; they come back once any leading ID3v2 tag is passed."""

    def __init__(self) -> None:
        self._head = b""
        self._skip: int | None = None  # bytes still to drop; None until the header is known
        self.done = False

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return data
        if self._skip is None:
            self._head += data
            if len(self._head) < _HEADER and b"ID3".startswith(self._head[:3]):
                return b""  # could still be a tag header: wait for all ten bytes
            if self._head[:3] != b"ID3":
                self.done = True
                return self._head
            size = 0
            for byte in self._head[6:10]:  # syncsafe: 7 bits a byte
                size = (size << 7) | (byte & 0x7F)
            footer = _HEADER if self._head[5] & 0x10 else 0
            self._skip = _HEADER + size + footer
            data, self._head = self._head, b""
        dropped = min(self._skip, len(data))
        self._skip -= dropped
        if self._skip == 0:
            self.done = True
        return data[dropped:]
