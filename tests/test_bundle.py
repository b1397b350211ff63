import json
from dataclasses import replace

import pytest

from langgrasp.runtime.bundle import (
    BUNDLE_VERSION,
    FRAME_GRAPH_FILES,
    MANIFEST_FILE,
    TEXT_GRAPH_FILE,
    BundleError,
    Manifest,
    file_entry,
    read_manifest,
    write_manifest,
)


@pytest.fixture
def bundle(tmp_path):
    """A folder with placeholder files and a manifest that lists them (no real graphs)."""
    files = {TEXT_GRAPH_FILE: b"text graph", FRAME_GRAPH_FILES["fp32"]: b"frame graph"}
    files["bpe_simple_vocab_16e6.txt.gz"] = b"vocab"
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    manifest = Manifest(
        model="lggd-tiny",
        config={"name": "lggd-tiny"},
        input_size=128,
        context_length=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        width_scale=64.0,
        decoding={"width_scale": 64.0, "top_n": 3},
        text_graph=file_entry(tmp_path, TEXT_GRAPH_FILE),
        frame_graphs={"fp32": file_entry(tmp_path, FRAME_GRAPH_FILES["fp32"])},
        vocab=file_entry(tmp_path, "bpe_simple_vocab_16e6.txt.gz"),
        shapes={"image": ["batch", 3, 128, 128]},
        opset=17,
        ir_version=8,
        exported_at="2025-01-01T00:00:00+00:00",
    )
    write_manifest(tmp_path, manifest)
    return tmp_path, manifest


def _edit_manifest(folder, change):
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_manifest_round_trips_and_decoding_is_typed(bundle):
    folder, manifest = bundle
    loaded = read_manifest(folder)
    assert loaded == manifest
    assert read_manifest(folder / MANIFEST_FILE) == manifest  # the file works as well
    decoding = loaded.grasp_decoding()
    assert decoding.top_n == 3 and decoding.width_scale == 64.0
    data = json.loads((folder / MANIFEST_FILE).read_text())
    assert list(data)[:2] == ["format", "format_version"]
    assert data["frame_graphs"]["fp32"]["file"] == "frame.onnx"


def test_missing_folder_or_manifest(tmp_path):
    with pytest.raises(BundleError, match="not found"):
        read_manifest(tmp_path / "nowhere")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(format_version=BUNDLE_VERSION + 1), "format version 2"),
        (lambda d: d.update(format="something-else"), "not a langgrasp bundle"),
        (lambda d: d.pop("input_size"), r"missing fields \['input_size'\]"),
        (lambda d: d.update(surprise=1), r"unknown fields \['surprise'\]"),
        (lambda d: d["decoding"].update(bogus=1), "malformed field"),
        (lambda d: d.update(frame_graphs={}), "expected fp32"),
    ],
)
def test_foreign_or_corrupt_manifest_is_rejected(bundle, change, message):
    folder, _ = bundle
    _edit_manifest(folder, change)
    with pytest.raises(BundleError, match=message):
        read_manifest(folder)


def test_manifest_that_is_not_json(bundle):
    folder, _ = bundle
    (folder / MANIFEST_FILE).write_bytes(b"\xff\xfe not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(folder)


def test_missing_truncated_or_altered_files(bundle):
    folder, _ = bundle
    frame = folder / FRAME_GRAPH_FILES["fp32"]
    frame.write_bytes(b"frame grap")  # one byte short
    with pytest.raises(BundleError, match="truncated"):
        read_manifest(folder)
    frame.write_bytes(b"frame GRAPH")  # same size, other bytes
    with pytest.raises(BundleError, match="SHA-256"):
        read_manifest(folder)
    assert read_manifest(folder, verify=False).model == "lggd-tiny"  # sizes only
    frame.unlink()
    with pytest.raises(BundleError, match="is missing"):
        read_manifest(folder, verify=False)


def test_entries_must_be_plain_file_names(bundle):
    folder, manifest = bundle
    moved = replace(manifest.vocab, file="../bpe_simple_vocab_16e6.txt.gz")
    write_manifest(folder, replace(manifest, vocab=moved))
    with pytest.raises(BundleError, match="plain file name"):
        read_manifest(folder)
