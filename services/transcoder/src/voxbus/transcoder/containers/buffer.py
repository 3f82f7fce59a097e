"""Input bytes not parsed yet, with the stream offset of the first of them."""


class ByteBuffer:
    """A FIFO of bytes: parsers append what arrives and take from the front what they have parsed.

    Deleting from the front of a `bytearray` is amortised O(1) in CPython (it moves a start pointer),
    so consumed bytes are dropped at once rather than tracked with a read offset.
    """

    __slots__ = ("_data", "_offset")

    def __init__(self) -> None:
        self._data = bytearray()
        self._offset = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def data(self) -> bytearray:
        """The unparsed bytes; callers read them and consume through `take`/`drop`, never write."""
        return self._data

    @property
    def offset(self) -> int:
        """Stream offset of `data[0]`: how many bytes were consumed so far."""
        return self._offset

    def extend(self, data: bytes) -> None:
        self._data += data

    def take(self, n: int) -> bytes:
        """Remove the first `n` bytes and return them."""
        taken = bytes(self._data[:n])
        self.drop(n)
        return taken

    def drop(self, n: int) -> None:
        """Remove the first `n` bytes (`n` must not exceed the length)."""
        if not 0 <= n <= len(self._data):
            raise ValueError(f"cannot drop {n} of {len(self._data)} bytes")
        del self._data[:n]
        self._offset += n
