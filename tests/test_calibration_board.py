"""Board configs, detection, the legacy-pattern diagnosis, and the printable PNG/PDF."""

from __future__ import annotations

import re
import zlib

import cv2
import numpy as np
import pytest

from langgrasp.calibration.board import (
    BOARDS,
    BoardConfig,
    detect_board,
    detect_views,
    get_board,
    legacy_hint,
)
from langgrasp.calibration.printing import (
    INCH_M,
    MARGIN_M,
    POINTS_PER_INCH,
    png_resolution,
    render_sheet,
    sheet_pdf,
    sheet_png,
    write_board_files,
)
from langgrasp.errors import InputError

EVEN_ROWS = "8x6:30mm:22mm:DICT_4X4_50"  # legacy and current patterns differ for even rows


def test_registered_boards_are_valid_and_fit_their_paper():
    paper_landscape_m = {"charuco-a4": (0.297, 0.210), "charuco-a3": (0.420, 0.297)}
    for name, board in BOARDS.items():
        assert board.name == name
        width, height = render_sheet(board, dpi=50).size_m
        paper_w, paper_h = paper_landscape_m[name]
        assert width < paper_w and height < paper_h


def test_spec_string_is_parsed_in_millimetres():
    board = get_board(EVEN_ROWS)
    assert (board.squares_x, board.squares_y) == (8, 6)
    assert board.square_m == pytest.approx(0.030)
    assert board.marker_m == pytest.approx(0.022)
    assert board.dictionary == "DICT_4X4_50"
    assert get_board(EVEN_ROWS, legacy=True).legacy


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("charuco-a5", "charuco-a4"),  # unknown name lists the known ones
        ("8x6:30:22:DICT_4X4_50", "spec like"),  # units missing
        ("8x6:30mm:40mm:DICT_4X4_50", "smaller than the square"),
        ("20x20:30mm:22mm:DICT_4X4_50", "bigger dictionary"),
        ("8x6:30mm:22mm:DICT_9X9_50", "unknown ArUco dictionary"),
    ],
)
def test_bad_board_names_explain_the_fix(name, message):
    with pytest.raises(InputError, match=message):
        get_board(name)


def test_square_in_millimetres_by_mistake_is_rejected():
    with pytest.raises(InputError, match="metres"):
        BoardConfig("mm-by-mistake", 7, 5, 32.0, 24.0)


def test_corner_positions_match_opencv():
    for board in (*BOARDS.values(), get_board(EVEN_ROWS)):
        expected = board.create().getChessboardCorners()
        ours = [board.corner_position(i) for i in range(board.corner_count)]
        np.testing.assert_allclose(ours, expected, atol=1e-9)
    with pytest.raises(InputError):
        BOARDS["charuco-a4"].corner_position(24)


def test_detection_finds_every_corner_where_the_board_puts_it():
    board = BOARDS["charuco-a4"]
    square_px = 60
    image = board.create().generateImage(
        (board.squares_x * square_px, board.squares_y * square_px), marginSize=0, borderBits=1
    )
    image = cv2.copyMakeBorder(image, 30, 30, 30, 30, cv2.BORDER_CONSTANT, value=255)
    detection = detect_board(np.repeat(image[:, :, None], 3, axis=2), board)
    assert len(detection) == board.corner_count
    expected = detection.object_points(board)[:, :2] * (square_px / board.square_m) - 0.5 + 30
    np.testing.assert_allclose(detection.corners_px, expected, atol=0.5)


def _legacy_image(board: BoardConfig) -> np.ndarray:
    legacy = BoardConfig(**{**board.to_dict(), "legacy": True})
    return legacy.create().generateImage((800, 600), marginSize=30, borderBits=1)


def test_legacy_board_is_named_with_the_option_that_fixes_it():
    board = get_board(EVEN_ROWS)
    image = _legacy_image(board)
    detection = detect_board(image, board)
    assert len(detection) == 0 and detection.marker_count > 0
    hint = legacy_hint(image, board, detection)
    assert "legacy" in hint and "--legacy-pattern" in hint
    with pytest.raises(InputError, match="--legacy-pattern"):
        detect_views([("old.png", image)], board, min_corners=8)
    # With the flag set the same image is fully usable.
    used, skipped = detect_views([("old.png", image)], get_board(EVEN_ROWS, legacy=True), 8)
    assert len(used) == 1 and not skipped and len(used[0][1]) == board.corner_count


def test_flag_set_on_a_current_board_says_to_drop_it():
    board = get_board(EVEN_ROWS)
    image = board.create().generateImage((800, 600), marginSize=30, borderBits=1)
    flagged = get_board(EVEN_ROWS, legacy=True)
    hint = legacy_hint(image, flagged, detect_board(image, flagged))
    assert "without --legacy-pattern" in hint


def test_images_without_enough_corners_are_skipped_with_a_reason():
    board = BOARDS["charuco-a4"]
    blank = np.full((240, 320), 128, np.uint8)
    used, skipped = detect_views([("blank.png", blank)], board, min_corners=8)
    assert not used
    assert skipped[0][0] == "blank.png" and "0 of 24" in skipped[0][1]


def test_sheet_is_at_true_scale_and_marks_corner_zero():
    board = BOARDS["charuco-a4"]
    sheet = render_sheet(board, dpi=150)
    square_px = board.square_m * sheet.pixels_per_m
    assert square_px == pytest.approx(round(square_px))  # whole pixels per square
    assert sheet.dpi == pytest.approx(150, rel=0.01)
    detection = detect_board(sheet.image, board)
    assert len(detection) == board.corner_count
    origin = np.array(sheet.pattern_origin_px)
    corner0 = detection.corners_px[list(detection.ids).index(0)]
    np.testing.assert_allclose(corner0, origin + square_px - 0.5, atol=0.5)
    # Tick marks in the top and left margins line up with corner 0.
    column, row = (origin + square_px).astype(int)
    margin = round(MARGIN_M * sheet.pixels_per_m)
    assert sheet.image[margin // 2, column - 1] == 0 and sheet.image[row - 1, margin // 2] == 0
    assert sheet.image[margin // 2, column + 10] == 255


def test_png_carries_its_resolution_and_label():
    board = BOARDS["charuco-a4"]
    sheet = render_sheet(board, dpi=100)
    png = sheet_png(sheet)
    assert png_resolution(png) == pytest.approx(sheet.pixels_per_m, abs=0.5)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert decoded.shape == sheet.image.shape
    band = decoded[-round(0.014 * sheet.pixels_per_m) :]
    assert (band < 100).sum() > 50  # the label is printed in the band
    assert "32.0 mm" in sheet.label


def test_pdf_page_is_the_sheet_in_points_with_the_image_and_text():
    board = BOARDS["charuco-a4"]
    sheet = render_sheet(board, dpi=72)
    pdf = sheet_pdf(sheet)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    width_m, height_m = sheet.size_m
    media = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    to_points = POINTS_PER_INCH / INCH_M
    assert float(media[1]) == pytest.approx(width_m * to_points, abs=0.01)
    assert float(media[2]) == pytest.approx(height_m * to_points, abs=0.01)
    # Cross-reference table: every offset points at its object.
    startxref = int(re.search(rb"startxref\n(\d+)", pdf)[1])
    assert pdf[startxref:].startswith(b"xref")
    offsets = re.findall(rb"(\d{10}) 00000 n ", pdf[startxref:])
    for number, offset in enumerate(offsets, start=1):
        assert pdf[int(offset) :].startswith(f"{number} 0 obj".encode())
    # The image XObject decodes to the sheet pixels.
    header = re.search(rb"/Width (\d+) /Height (\d+).*?/Length (\d+) >>\nstream\n", pdf)
    start = header.end()
    pixels = zlib.decompress(pdf[start : start + int(header[3])])
    assert (int(header[1]), int(header[2])) == (sheet.image.shape[1], sheet.image.shape[0])
    assert pixels == sheet.image.tobytes()
    assert b"32.0 mm" in pdf and b"100 mm" in pdf


def test_write_board_files(tmp_path):
    paths = write_board_files(BOARDS["charuco-a4"], tmp_path / "boards", dpi=100)
    assert [p.suffix for p in paths] == [".png", ".pdf", ".json"]
    assert all(p.stat().st_size > 0 for p in paths)
    assert not list((tmp_path / "boards").glob(".*tmp*"))
