"""Printable boards: a PNG that carries its DPI and a one-page PDF at true scale.

The sheet is the board pattern, a white quiet zone of ``MARGIN_M`` around it, two tick marks in
the margin that point at ChArUco corner 0 (the verification point, see ``verify.py``) and a label
band with the board's name and square size. The PDF's page is exactly the sheet, in points
(1/72 inch), with the label as vector text and a ``SCALE_BAR_M`` bar to check the print with a
ruler. It is written by hand (no new dependency): one image XObject compressed with zlib
(FlateDecode) and the built-in Helvetica font (PDF 1.4, ISO 32000-1 sections 7.5 and 8.9).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from langgrasp.calibration.board import BoardConfig
from langgrasp.calibration.storage import atomic_write_bytes
from langgrasp.errors import InputError

INCH_M = 0.0254
POINTS_PER_INCH = 72.0
MARGIN_M = 0.012
"""White quiet zone around the pattern (marker detection needs contrast at the outer squares)."""
LABEL_BAND_M = 0.014
"""Height of the label band under the margin."""
LABEL_TEXT_M = 0.0035
"""Height of the label's capital letters."""
SCALE_BAR_M = 0.1
"""Length of the PDF's check bar: measure it on the print to confirm 100 % scale."""
TICK_WIDTH_M = 0.0004
DEFAULT_DPI = 300.0
HERSHEY_CAP_HEIGHT = 22.0
"""Cap height in pixels of ``cv2.FONT_HERSHEY_SIMPLEX`` at scale 1."""


@dataclass(frozen=True)
class BoardSheet:
    """A rendered board sheet.

    Attributes:
        image: ``(H, W)`` uint8 grey sheet: margin, pattern, corner-0 ticks and an empty label band.
        pixels_per_m: Exact print resolution (pixels per metre) that gives the true board size.
        pattern_origin_px: ``(x, y)`` pixel position of the board frame's origin on the sheet.
        label: The text to print in the label band.
    """

    image: np.ndarray
    pixels_per_m: float
    pattern_origin_px: tuple[int, int]
    label: str

    @property
    def size_m(self) -> tuple[float, float]:
        """Sheet (width, height) in metres at ``pixels_per_m``."""
        height, width = self.image.shape
        return (width / self.pixels_per_m, height / self.pixels_per_m)

    @property
    def dpi(self) -> float:
        """Print resolution in dots per inch."""
        return self.pixels_per_m * INCH_M


def board_label(board: BoardConfig) -> str:
    """One line describing the board for the printed label (ASCII)."""
    return (
        f"{board.name}: {board.squares_x}x{board.squares_y} squares of "
        f"{board.square_m * 1000:.1f} mm, markers {board.marker_m * 1000:.1f} mm, "
        f"{board.dictionary}{', legacy pattern' if board.legacy else ''}. Print at 100 %."
    )


def render_sheet(board: BoardConfig, dpi: float = DEFAULT_DPI) -> BoardSheet:
    """Render the board sheet at about ``dpi`` (a whole number of pixels per square).

    Args:
        board: The board.
        dpi: Requested print resolution; the result's ``dpi`` differs slightly because one
            square is a whole number of pixels.
    """
    if not 50 <= dpi <= 2400:
        raise InputError(f"dpi must be between 50 and 2400, got {dpi}")
    square_px = round(board.square_m / INCH_M * dpi)
    pixels_per_m = square_px / board.square_m
    pattern = board.create().generateImage(
        (board.squares_x * square_px, board.squares_y * square_px), marginSize=0, borderBits=1
    )
    margin = round(MARGIN_M * pixels_per_m)
    band = round(LABEL_BAND_M * pixels_per_m)
    sheet = np.full(
        (pattern.shape[0] + 2 * margin + band, pattern.shape[1] + 2 * margin), 255, np.uint8
    )
    sheet[margin : margin + pattern.shape[0], margin : margin + pattern.shape[1]] = pattern
    # Ticks in the top and left margins on the lines through ChArUco corner 0.
    tick = max(1, round(TICK_WIDTH_M * pixels_per_m))
    corner = margin + square_px
    sheet[margin // 4 : 3 * margin // 4, corner - tick : corner + tick] = 0
    sheet[corner - tick : corner + tick, margin // 4 : 3 * margin // 4] = 0
    return BoardSheet(sheet, pixels_per_m, (margin, margin), board_label(board))


def sheet_png(sheet: BoardSheet) -> bytes:
    """PNG bytes of the sheet with the label drawn in and the DPI stored in a pHYs chunk."""
    image = cv2.cvtColor(sheet.image, cv2.COLOR_GRAY2BGR)
    scale = LABEL_TEXT_M * sheet.pixels_per_m / HERSHEY_CAP_HEIGHT
    band_top = image.shape[0] - round(LABEL_BAND_M * sheet.pixels_per_m)
    baseline = band_top + round(LABEL_TEXT_M * sheet.pixels_per_m)
    cv2.putText(
        image,
        sheet.label,
        (sheet.pattern_origin_px[0], baseline),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (0, 0, 0),
        max(1, round(scale * 1.5)),
        cv2.LINE_AA,
    )
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise InputError("OpenCV could not encode the board PNG")
    return png_with_resolution(encoded.tobytes(), sheet.pixels_per_m)


def png_with_resolution(png: bytes, pixels_per_m: float) -> bytes:
    """Insert (or replace) the ``pHYs`` chunk: pixels per metre (PNG spec 11.3.5.3)."""
    signature, header_end = png[:8], 8 + 8 + 13 + 4  # signature + IHDR (length, type, data, CRC)
    if signature != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise InputError("not a PNG stream")
    ppm = round(pixels_per_m)
    chunk = _png_chunk(b"pHYs", struct.pack(">IIB", ppm, ppm, 1))
    rest, position = b"", header_end
    while position < len(png):  # copy the other chunks, dropping any existing pHYs
        length = struct.unpack(">I", png[position : position + 4])[0]
        end = position + 12 + length
        if png[position + 4 : position + 8] != b"pHYs":
            rest += png[position:end]
        position = end
    return png[:header_end] + chunk + rest


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_resolution(png: bytes) -> float | None:
    """Pixels per metre stored in a PNG's ``pHYs`` chunk (None without one or without units)."""
    position = 8
    while position < len(png):
        length = struct.unpack(">I", png[position : position + 4])[0]
        if png[position + 4 : position + 8] == b"pHYs":
            x, _, unit = struct.unpack(">IIB", png[position + 8 : position + 17])
            return float(x) if unit == 1 else None
        position += 12 + length
    return None


def sheet_pdf(sheet: BoardSheet) -> bytes:
    """A one-page PDF whose page is the sheet at true scale, label as vector text."""
    to_pt = POINTS_PER_INCH / INCH_M  # points per metre
    width_m, height_m = sheet.size_m
    page_w, page_h = width_m * to_pt, height_m * to_pt
    pixels = sheet.image
    left = sheet.pattern_origin_px[0] / sheet.pixels_per_m * to_pt
    band = LABEL_BAND_M * to_pt
    font_pt = LABEL_TEXT_M * to_pt / 0.72  # Helvetica's cap height is 0.72 em
    bar_y = band * 0.25
    text_y = band - LABEL_TEXT_M * to_pt * 1.4
    bar_text = f"This bar must measure {SCALE_BAR_M * 1000:.0f} mm."
    content = "\n".join(
        [
            f"q {page_w:.4f} 0 0 {page_h:.4f} 0 0 cm /Im0 Do Q",
            f"BT /F1 {font_pt:.3f} Tf {left:.3f} {text_y:.3f} Td ({_pdf_text(sheet.label)}) Tj ET",
            f"q 0 g {left:.3f} {bar_y:.3f} {SCALE_BAR_M * to_pt:.4f} {band * 0.1:.3f} re f Q",
            f"BT /F1 {font_pt * 0.8:.3f} Tf {left + SCALE_BAR_M * to_pt + 6:.3f} {bar_y:.3f} Td "
            f"({_pdf_text(bar_text)}) Tj ET",
        ]
    ).encode("ascii")
    image_data = zlib.compress(pixels.tobytes(), 9)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_w:.4f} {page_h:.4f}] "
            "/Resources << /XObject << /Im0 4 0 R >> /Font << /F1 5 0 R >> >> /Contents 6 0 R >>"
        ).encode("ascii"),
        _pdf_stream(
            f"/Type /XObject /Subtype /Image /Width {pixels.shape[1]} /Height {pixels.shape[0]} "
            "/ColorSpace /DeviceGray /BitsPerComponent 8 /Interpolate false /Filter /FlateDecode",
            image_data,
        ),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        _pdf_stream("", content),
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode("ascii") + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode("ascii") + b"0000000000 65535 f \n"
    out += b"".join(f"{offset:010d} 00000 n \n".encode("ascii") for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    ).encode("ascii")
    return bytes(out)


def _pdf_stream(dictionary: str, data: bytes) -> bytes:
    return (
        f"<< {dictionary} /Length {len(data)} >>\nstream\n".encode("ascii") + data + b"\nendstream"
    )


def _pdf_text(text: str) -> str:
    """Escape a string for a PDF literal string (ASCII only)."""
    ascii_text = text.encode("ascii", "replace").decode("ascii")
    return ascii_text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def write_board_files(board: BoardConfig, out_dir: Path, dpi: float = DEFAULT_DPI) -> list[Path]:
    """Write ``<name>.png``, ``<name>.pdf`` and ``<name>.json`` (the config) into ``out_dir``.

    Returns:
        The written paths: PNG, PDF, JSON.
    """
    import json

    sheet = render_sheet(board, dpi)
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in board.name)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf", out_dir / f"{stem}.json"]
    atomic_write_bytes(paths[0], sheet_png(sheet))
    atomic_write_bytes(paths[1], sheet_pdf(sheet))
    atomic_write_bytes(paths[2], (json.dumps(board.to_dict(), indent=2) + "\n").encode())
    return paths
