"""Push-based Ogg demuxer: bytes in any chunking, Opus or Vorbis packets out."""

from .buffer import ByteBuffer
from .errors import ContainerError
from .info import OPUS_RATE, StreamInfo
from .ogg_page import NO_GRANULE, OggPage, page_size, parse_page
from .xiph import (
    OPUS_HEAD,
    OPUS_HEADERS,
    VORBIS_HEADERS,
    VORBIS_ID,
    OpusHead,
    VorbisId,
    parse_opus_head,
    parse_vorbis_id,
    xiph_lace,
)

MAX_PACKET_SIZE = 16 * 1024 * 1024
# First packets of streams that may share a file with the audio and are not audio themselves.
_COMPANION_MAGICS = (b"fishead\x00", b"\x80theora")


class OggDemuxer:
    """Turns an Ogg Opus or Ogg Vorbis byte stream into its audio packets, one page at a time.

    The first beginning-of-stream page whose packet is OpusHead or a Vorbis identification header picks
    the logical stream; Skeleton and Theora streams beside it are skipped, and so are all pages of other
    serials. Header packets are consumed into `info`. Unparsed bytes never exceed one page (under
    64 KiB) plus the chunk being fed; a packet spanning pages is held until its last page (16 MiB at most).
    Chained streams (a new BOS page after the audio's EOS) are refused.
    """

    def __init__(self) -> None:
        self._buf = ByteBuffer()
        self._need = 1
        self._serial: int | None = None
        self._skipped_serials: set[int] = set()
        self._magics: tuple[bytes, ...] = ()
        self._headers: list[bytes] = []
        self._ident: OpusHead | VorbisId | None = None
        self._info: StreamInfo | None = None
        self._partial: bytearray | None = None
        self._next_sequence = 0
        self._last_granule: int | None = None
        self._eos = False
        self._ended = False
        self._truncated = False

    @property
    def info(self) -> StreamInfo | None:
        """The stream's description, once all its header packets were seen."""
        return self._info

    @property
    def last_granule(self) -> int | None:
        """Granule position of the last audio page on which a packet ended.

        For Opus it counts 48 kHz samples including the pre-skip, so the stream's length is
        `last_granule - pre_skip` once the last page was seen; for Vorbis it counts samples.
        """
        return self._last_granule

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet: at most one page (64 KiB) plus one chunk."""
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        """After `end()`: whether the stream stopped before the audio stream's end-of-stream page."""
        return self._truncated

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the audio packets they completed, in order."""
        if self._ended:
            raise RuntimeError("feed() after end()")
        buf = self._buf
        buf.extend(data)
        packets: list[bytes] = []
        while len(buf) >= self._need:
            size = page_size(buf.data, buf.offset)
            if size is None or len(buf) < size:
                self._need = size or len(buf) + 1
                break
            offset = buf.offset
            packets += self._on_page(parse_page(buf.take(size), offset))
            self._need = 1
        return packets

    def end(self) -> list[bytes]:
        """Mark the end of the stream. Packets are returned as soon as they complete, so this returns
        none; whether bytes were cut short is reported by `truncated`, never raised."""
        self._ended = True
        self._truncated = not self._eos or len(self._buf) > 0 or self._partial is not None
        return []

    def _on_page(self, page: OggPage) -> list[bytes]:
        if self._serial is None:
            if not page.bos:
                raise ContainerError(f"Ogg page at byte {page.offset} precedes any Opus or Vorbis stream")
            if page.serial in self._skipped_serials or self._is_companion(page):
                self._skipped_serials.add(page.serial)
                return []
            self._select(page)
        elif page.serial != self._serial or self._eos:
            if page.bos and self._eos:
                raise ContainerError(f"chained Ogg stream at byte {page.offset} is not supported")
            return []
        if page.sequence != self._next_sequence:
            raise ContainerError(
                f"Ogg page at byte {page.offset} has sequence number {page.sequence},"
                f" expected {self._next_sequence}: pages are missing"
            )
        self._next_sequence = (page.sequence + 1) & 0xFFFFFFFF
        self._eos = page.eos
        packets = self._packets(page)
        audio = []
        for packet in packets:
            if self._info is None:
                self._on_header(packet, page.offset)
            elif packet:
                audio.append(packet)
        if audio and page.granule != NO_GRANULE:
            self._last_granule = page.granule
        return audio

    @staticmethod
    def _is_companion(page: OggPage) -> bool:
        return page.first_packet().startswith(_COMPANION_MAGICS)

    def _select(self, page: OggPage) -> None:
        first = page.first_packet()
        if first.startswith(OPUS_HEAD):
            self._magics = OPUS_HEADERS
        elif first.startswith(VORBIS_ID):
            self._magics = VORBIS_HEADERS
        else:
            raise ContainerError(f"unsupported Ogg codec {first[:8]!r} in the page at byte {page.offset}")
        self._serial = page.serial
        self._next_sequence = page.sequence

    def _packets(self, page: OggPage) -> list[bytes]:
        """Packets that end on `page`, joining those begun on earlier pages; keeps the unfinished one."""
        if page.continued != (self._partial is not None):
            if page.continued:
                raise ContainerError(f"Ogg page at byte {page.offset} continues a packet that never began")
            raise ContainerError(f"Ogg page at byte {page.offset} leaves the previous packet unfinished")
        body = page.body
        packets = []
        start = end = 0
        for lace in page.lacing:
            end += lace
            if lace == 255:
                continue
            if self._partial is None:
                packets.append(body[start:end])
            else:
                self._partial += body[start:end]
                packets.append(bytes(self._partial))
                self._partial = None
            start = end
        if page.lacing and page.lacing[-1] == 255:
            if self._partial is None:
                self._partial = bytearray()
            self._partial += body[start:end]
            if len(self._partial) > MAX_PACKET_SIZE:
                raise ContainerError(f"Ogg packet exceeds {MAX_PACKET_SIZE} bytes at byte {page.offset}")
        return packets

    def _on_header(self, packet: bytes, offset: int) -> None:
        index = len(self._headers)
        if not packet.startswith(self._magics[index]):
            raise ContainerError(
                f"expected header packet {self._magics[index]!r} in the Ogg page at byte {offset},"
                f" got {packet[:8]!r}"
            )
        if index == 0:
            # Parsed on arrival so that a bad identification header is reported at its own page.
            self._ident = (
                parse_opus_head(packet, offset)
                if self._magics is OPUS_HEADERS
                else parse_vorbis_id(packet, offset)
            )
        self._headers.append(packet)
        if len(self._headers) < len(self._magics):
            return
        ident = self._ident
        if isinstance(ident, OpusHead):
            self._info = StreamInfo(
                codec="opus",
                sample_rate=ident.input_rate or OPUS_RATE,
                channels=ident.channels,
                pre_skip=ident.pre_skip,
                extradata=self._headers[0],
            )
        elif ident is not None:
            self._info = StreamInfo(
                codec="vorbis",
                sample_rate=ident.sample_rate,
                channels=ident.channels,
                extradata=xiph_lace(self._headers),
            )
        self._headers = []
