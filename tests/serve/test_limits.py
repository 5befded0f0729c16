"""Limits and bad input: clear JSON errors, refused before the cost is paid, nothing left behind."""

from __future__ import annotations

import asyncio
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnkit.inference import Predictor
from serve_helpers import StreamedUpload, png_bytes, run, serving, upload


def png_bomb(side: int = 20_000) -> bytes:
    """A valid side x side 1-bit grey PNG of zeros: tens of KB that would decode to side^2 bytes (mode L)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, parts = zlib.compressobj(6), b"\x00" * (1 + (side + 7) // 8), []
    for _ in range(side):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def _status_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset this process's peak resident memory (VmHWM, via /proc/self/clear_refs) and return it.
    The peak, not the resident size after the request: freed pixel buffers go back to the OS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs not writable)")
    return _status_bytes("VmHWM")


def peak_rss() -> int:
    return _status_bytes("VmHWM")


def test_body_over_the_limit_is_refused_while_streaming(predictor: Predictor) -> None:
    limit, chunk = 256 * 1024, 64 * 1024
    body = StreamedUpload(chunk=chunk, chunks=160)  # 10 MB if it were all read

    async def scenario():
        async with serving(predictor, max_upload_mb=limit / 2**20) as client:
            streamed = await client.post("/predict", content=body.content(), headers=body.headers)
            declared = await client.post("/predict", **upload(b"\xff\xd8\xff" + b"\0" * (2 * limit)))
            return streamed, declared

    streamed, declared = run(scenario)
    assert streamed.status_code == 413 and streamed.json()["error"] == "request body too large"
    assert "262144 bytes" in streamed.json()["detail"]
    assert body.pulled <= limit + chunk, f"read {body.pulled} bytes of a {limit}-byte limit"
    assert declared.status_code == 413, "a declared Content-Length over the limit is refused before reading"


def test_types_are_sniffed_by_magic_bytes_not_the_clients_word(predictor: Predictor) -> None:
    webp = png_bytes(5, fmt="WEBP")
    gif = png_bytes(6, fmt="GIF")
    bmp = png_bytes(7, fmt="BMP")
    jpeg = png_bytes(8, fmt="JPEG")
    tiff = png_bytes(9, fmt="TIFF")

    async def scenario():
        async with serving(predictor) as client:
            good = [await client.post("/predict", **upload(data, f"x.{kind}", "application/octet-stream"))
                    for kind, data in (("webp", webp), ("gif", gif), ("bmp", bmp), ("jpg", jpeg))]
            bad = [await client.post("/predict", **upload(b"just some text\n", "notes.png", "image/png")),
                   await client.post("/predict", **upload(tiff, "scan.tiff", "image/tiff")),
                   await client.post("/predict", **upload(b"", "empty.jpg", "image/jpeg"))]
            return good, bad

    good, bad = run(scenario)
    assert [r.status_code for r in good] == [200] * 4
    assert [r.status_code for r in bad] == [415] * 3
    assert bad[0].json()["error"] == "unsupported file type" and "notes.png" in bad[0].json()["detail"]
    assert "empty file" in bad[2].json()["detail"]


def test_truncated_and_corrupt_images_are_400_naming_the_problem(predictor: Predictor) -> None:
    whole = png_bytes(10, size=(64, 64))
    truncated = whole[: len(whole) // 2]
    garbage_jpeg = b"\xff\xd8\xff\xe0" + b"\x13" * 300

    async def scenario():
        async with serving(predictor) as client:
            return [await client.post("/predict", **upload(truncated, "half.png")),
                    await client.post("/predict", **upload(garbage_jpeg, "noise.jpg", "image/jpeg"))]

    for response, name in zip(run(scenario), ("half.png", "noise.jpg")):
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"] == "unreadable image" and body["detail"].startswith(name + ": ")
        assert len(body["detail"]) > len(name) + 5, "the problem is named"


# 9000^2 = 81 Mpx passes Pillow's and the Predictor's guards: only the service's --max-pixels stops it.
@pytest.mark.parametrize("side", [20_000, 9_000])
def test_a_decompression_bomb_is_refused_from_its_header(predictor: Predictor, side: int) -> None:
    bomb = png_bomb(side)
    assert len(bomb) < 1_000_000

    async def scenario():
        async with serving(predictor, max_pixels=40_000_000) as client:
            await client.post("/predict", **upload(png_bytes(1)))  # warm every code path first
            before = reset_peak_rss()
            response = await client.post("/predict", **upload(bomb, "bomb.png"))
            return response, peak_rss() - before

    response, grown = run(scenario)
    assert response.status_code == 413 and response.json()["error"] == "image has too many pixels"
    assert f"{side * side} pixels" in response.json()["detail"] and "40000000 pixels" in response.json()["detail"]
    assert grown < 100 * 2**20, f"peak memory grew by {grown / 2**20:.0f} MB"


def test_missing_field_is_422(predictor: Predictor) -> None:
    async def scenario():
        async with serving(predictor) as client:
            return [await client.post("/predict", files={"picture": ("a.png", png_bytes(1), "image/png")}),
                    await client.post("/predict", data={"file": "not a file"},
                                      files={"note": ("n.txt", b"x", "text/plain")}),
                    await client.post("/predict", data={"file": "not a form upload"})]

    wrong_field, text_field, urlencoded = run(scenario)
    for response in (wrong_field, text_field):
        assert response.status_code == 422
        assert response.json()["error"] == "invalid request"
        assert "multipart field `file`" in str(response.json()["detail"])
    assert urlencoded.status_code == 415 and "multipart/form-data" in urlencoded.json()["error"]


def test_no_temporary_files_for_big_uploads(predictor: Predictor, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 3 MB upload (Starlette would spool anything over 1 MB to a temporary file)."""
    created = []
    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        original = getattr(tempfile, name)
        monkeypatch.setattr(tempfile, name, lambda *a, _o=original, _n=name, **k: created.append(_n) or _o(*a, **k))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    pixels = np.random.default_rng(0).integers(0, 256, size=(1000, 1000, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    big = buffer.getvalue()
    assert len(big) > 2_900_000

    async def scenario():
        async with serving(predictor) as client:
            return await client.post("/predict", **upload(big, "big.png"))

    assert run(scenario).status_code == 200
    assert created == [] and list(tmp_path.iterdir()) == []


def test_good_requests_still_answer_correctly_after_a_burst_of_bad_ones(predictor: Predictor) -> None:
    good = png_bytes(42)
    expected = predictor.predict(good, top_k=3)[0]
    bad = [upload(b"text", "a.txt"), upload(png_bytes(1)[:40], "cut.png"), upload(png_bomb(9_000), "bomb.png"),
           {"files": {"other": ("x.png", good, "image/png")}}, upload(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "z.png")]

    async def scenario():
        async with serving(predictor, max_pixels=10_000_000) as client:
            statuses = [r.status_code for r in await asyncio.gather(
                *(client.post("/predict", **bad[i % len(bad)]) for i in range(25)))]
            return statuses, await client.post("/predict?top_k=3", **upload(good, "good.png"))

    statuses, answer = run(scenario)
    assert sorted(set(statuses)) == [400, 413, 415, 422]
    assert answer.status_code == 200
    body = answer.json()
    assert [p["label"] for p in body["predictions"]] == [c.label for c in expected.top]
    assert body["predictions"][0]["probability"] == pytest.approx(expected.probability, abs=1e-6)


def test_a_body_of_many_tiny_parts_is_refused_at_the_part_limit(predictor: Predictor) -> None:
    """The parser runs on the event loop: 10 MB of tiny form fields (190 000 parts) held it for
    seconds. Parsing stops past max_files + a few plain fields, before the parts are collected."""
    part = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n'
    body = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + png_bytes(1) + b"\r\n"
    fields = part * 200 + b"--x--\r\n"

    async def scenario():
        async with serving(predictor, max_files=4) as client:
            headers = {"content-type": "multipart/form-data; boundary=x"}
            return (await client.post("/predict", content=body + fields, headers=headers),
                    await client.post("/predict", content=body + part * 3 + b"--x--\r\n", headers=headers))

    refused, fine = run(scenario)
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"] == "too many parts" and "at most 4 images" in refused.json()["detail"]
    assert fine.status_code == 200, "a few plain fields beside the image are fine"


def test_an_unidentifiable_header_is_named_without_the_servers_memory_addresses(predictor: Predictor) -> None:
    """Pillow's "cannot identify image file <_io.BytesIO object at 0x7f...>" told a remote client a
    heap address and not what was wrong."""
    async def scenario():
        async with serving(predictor) as client:
            return [await client.post("/predict", **upload(data, name))
                    for data, name in ((b"\x89PNG\r\n\x1a\n", "cut.png"), (b"GIF89a", "cut.gif"))]

    for response, kind in zip(run(scenario), ("PNG", "GIF")):
        assert response.status_code == 400 and response.json()["error"] == "unreadable image"
        detail = response.json()["detail"]
        assert f"its {kind} header is truncated or corrupt" in detail, detail
        assert "0x" not in detail and "BytesIO" not in detail, detail


def test_max_pixels_above_the_predictors_own_guard_is_refused_at_start(predictor: Predictor) -> None:
    """The decoder keeps `Predictor.max_pixels` (Pillow's guard): with --max-pixels above it, an image
    between the two passed the header check and came back as a 400 "unreadable image"."""
    from cnnkit.errors import CnnkitError
    from cnnkit.serve import ServeSettings, create_app

    with pytest.raises(CnnkitError, match=f"max_pixels {predictor.max_pixels + 1} is above .* {predictor.max_pixels}"):
        create_app(predictor, ServeSettings(max_pixels=predictor.max_pixels + 1))
    create_app(predictor, ServeSettings(max_pixels=predictor.max_pixels))  # at the decoder's limit: accepted
