"""Uploads held in memory: a multipart body parsed without temporary files, and images checked by
their magic bytes and header before any pixel is decoded.

Starlette's form parser spools parts over 1 MB to disk; the body here is already bounded by
`BodyLimitMiddleware`, so parsing it in memory leaves nothing behind on the server.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from cnnkit.data.decode import BadImageError, read_header
from cnnkit.serve.errors import ServeError

# Magic bytes of the formats served (https://en.wikipedia.org/wiki/List_of_file_signatures).
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)
ACCEPTED_FORMATS = ("JPEG", "PNG", "WebP", "BMP", "GIF")
# Plain form fields tolerated beside the images (none is read; a client may send one or two).
EXTRA_PARTS = 8


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its form field, the client's file name (a label only, never a path) and bytes."""

    field: str
    filename: str
    data: bytes

    @property
    def label(self) -> str:
        """How answers and errors name it: the client's file name, else the form field."""
        return self.filename or self.field


def parse_multipart(body: bytes, content_type: str, *, max_files: int) -> tuple[list[Upload], dict[str, str]]:
    """(files, plain fields) of a multipart/form-data body; ServeError 400 when it is malformed, 413
    past `max_files` + `EXTRA_PARTS` parts (parsing stops there: it runs on the event loop)."""
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise ServeError(415, "expected multipart/form-data", f"got Content-Type {content_type or '(none)'!r}")
    boundary = options.get(b"boundary")
    if not boundary:
        raise ServeError(400, "malformed multipart body", "the Content-Type has no boundary")
    parts: list[dict] = []
    header = {"name": b"", "value": b""}

    def begin() -> None:
        if len(parts) == max_files + EXTRA_PARTS:
            raise ServeError(413, "too many parts", f"over {len(parts)} parts in the multipart body; "
                                                    f"at most {max_files} images per request")
        parts.append({"headers": {}, "data": bytearray()})

    def header_field(data: bytes, start: int, end: int) -> None:
        header["name"] += data[start:end]

    def header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def header_end() -> None:
        parts[-1]["headers"][header["name"].lower()] = header["value"]
        header["name"], header["value"] = b"", b""

    def part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    parser = MultipartParser(boundary, {"on_part_begin": begin, "on_header_field": header_field,
                                        "on_header_value": header_value, "on_header_end": header_end,
                                        "on_part_data": part_data})
    try:
        parser.write(body)
        parser.finalize()
    except ServeError:
        raise
    except Exception as error:  # python-multipart raises its own types on broken bodies
        raise ServeError(400, "malformed multipart body", str(error)) from error
    files: list[Upload] = []
    fields: dict[str, str] = {}
    for part in parts:
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in disposition:
            files.append(Upload(name, disposition[b"filename"].decode("utf-8", "replace"), bytes(part["data"])))
        else:
            fields[name] = part["data"].decode("utf-8", "replace")
    return files, fields


def sniff_format(data: bytes, filename: str) -> str:
    """The image format by magic bytes, whatever the client's content type; ServeError 415 otherwise."""
    for signature, name in _SIGNATURES:
        if data.startswith(signature):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    shown = data[:8].hex(" ") if data else "an empty file"
    raise ServeError(415, "unsupported file type",
                     f"{filename}: not a {', '.join(ACCEPTED_FORMATS)} image by its first bytes ({shown})")


def check_header(data: bytes, filename: str, *, image_format: str, max_pixels: int) -> None:
    """Refuse an image whose header claims over `max_pixels` (413) or cannot be read (400),
    before its decoder runs (a decompression bomb never allocates its pixels). `image_format` is
    what `sniff_format` found."""
    stream = io.BytesIO(data)
    stream.name = filename
    try:
        header = read_header(stream, max_pixels=sys.maxsize)  # the limit is applied below, by status
    except BadImageError as error:
        if isinstance(error.__cause__, Image.DecompressionBombError):  # Pillow's own guard, from the header
            raise ServeError(413, "image has too many pixels",
                             f"{filename}: over the limit of {max_pixels} pixels ({error.__cause__})") from error
        if isinstance(error.__cause__, UnidentifiedImageError):  # its text shows the stream's repr (an address)
            raise ServeError(400, "unreadable image", f"{filename}: not a readable image: its {image_format} "
                                                      "header is truncated or corrupt") from error
        raise ServeError(400, "unreadable image", f"{filename}: {error.reason}") from error
    if header.width * header.height > max_pixels:
        raise ServeError(413, "image has too many pixels",
                         f"{filename}: {header.width}x{header.height} = {header.width * header.height} pixels, "
                         f"over the limit of {max_pixels} pixels")
