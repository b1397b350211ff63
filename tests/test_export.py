import contextlib
import io
import json
import shutil
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from langgrasp.cli import main
from langgrasp.datasets.synthetic import render_scene
from langgrasp.detector.checkpoint import save_checkpoint
from langgrasp.detector.predict import Predictor
from langgrasp.errors import InputError
from langgrasp.export.exporter import ExportOptions, export_bundle
from langgrasp.export.graphs import MAX_IR_VERSION, OPSET, ExportError, finalize
from langgrasp.export.parity import FP32_ATOL, same_grasp
from langgrasp.export.probe import probe_model
from langgrasp.export.quantize import non_finite_nodes, output_tail_nodes, topological_sort
from langgrasp.runtime.bundle import (
    FRAME_GRAPH_FILES,
    TEXT_GRAPH_FILE,
    read_manifest,
    write_manifest,
)
from langgrasp.runtime.engine import GraspDetector
from langgrasp.runtime.tokenizer import VOCAB_FILENAME

PARITY_SCENES = 3
CALIBRATION_SCENES = 8


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """One intra-op thread: OpenMP pools stall whenever another process takes a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def probe():
    """lggd-tiny whose maps vary with the image, so parity compares real grasps."""
    return probe_model("lggd-tiny", seed=0, scenes=4)


@pytest.fixture(scope="module")
def exported(probe, tmp_path_factory):
    """A checkpoint exported through the CLI with int8 and fp16; returns (bundle, JSON result)."""
    root = tmp_path_factory.mktemp("export")
    checkpoint = save_checkpoint(root / "checkpoint", probe, {"metrics": {"j_at_1": 0.5}})
    bundle = root / "bundle"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(bundle), "--json"]
    args += ["--int8", "--calib-n", str(CALIBRATION_SCENES), "--fp16"]
    args += ["--parity-scenes", str(PARITY_SCENES)]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(args) == 0
    return bundle, json.loads(stdout.getvalue())


def test_bundle_is_complete_and_checker_valid(exported):
    bundle, result = exported
    manifest = read_manifest(bundle)
    names = {TEXT_GRAPH_FILE, VOCAB_FILENAME, *FRAME_GRAPH_FILES.values(), "manifest.json"}
    assert {p.name for p in bundle.iterdir()} == names  # nothing else, no temporary files
    assert not list(bundle.parent.glob(".bundle*"))
    assert manifest.model == "lggd-tiny" and manifest.input_size == 128
    assert manifest.context_length == 32 and manifest.width_scale == 64.0
    assert manifest.metrics == {"j_at_1": 0.5}
    assert len(manifest.source["weights_sha256"]) == 64
    assert set(manifest.frame_graphs) == {"fp32", "int8", "fp16"}
    assert manifest.shapes["image"] == ["batch", 3, 128, 128]
    assert manifest.shapes["mask"] == ["batch", 1, 128, 128]
    assert manifest.shapes["tokens"] == ["batch", 32]
    for entry in (manifest.text_graph, *manifest.frame_graphs.values()):
        model = onnx.load(str(bundle / entry.file))
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version <= MAX_IR_VERSION
        assert {o.domain: o.version for o in model.opset_import}.get("", OPSET) == OPSET
        ort.InferenceSession(str(bundle / entry.file), providers=["CPUExecutionProvider"])
    int8 = onnx.load(str(bundle / FRAME_GRAPH_FILES["int8"]))
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    outputs = {o.name for o in int8.graph.output}
    # the output tail stays float: one scale for mask logits and grasp maps would put the
    # opening width on a coarse grid (quantize.output_tail_nodes)
    assert not [
        n.name
        for n in int8.graph.node
        if n.op_type == "DequantizeLinear" and outputs & set(n.output)
    ]
    fp16 = onnx.load(str(bundle / FRAME_GRAPH_FILES["fp16"]))
    assert any(t.data_type == TensorProto.FLOAT16 for t in fp16.graph.initializer)
    assert set(result["files"]) == names - {"manifest.json"}


def test_fp32_parity_with_pytorch_holds_and_is_recorded(exported):
    bundle, result = exported
    fp32 = result["parity"][0]
    assert (fp32["candidate"], fp32["reference"]) == ("onnx fp32", "pytorch")
    assert fp32["scenes"] == PARITY_SCENES
    assert set(fp32["max_abs"]) == {"mask", "grasp", "words", "sentence"}
    assert all(value <= FP32_ATOL for value in fp32["max_abs"].values())
    assert fp32["exact"] == {"token_ids": True, "padding": True}
    assert fp32["top1_identical"] == PARITY_SCENES
    assert fp32["reference_found"] == PARITY_SCENES  # the probe model finds grasps: not vacuous
    reduced = {r["candidate"] for r in result["parity"][1:]}
    assert reduced == {"onnx int8", "onnx fp16"}
    assert read_manifest(bundle).parity["reports"] == result["parity"]


def test_engine_returns_the_same_top_grasp_as_pytorch(exported, probe):
    bundle, _ = exported
    detector = GraspDetector(bundle, providers=["cpu"], precision="fp32")
    predictor = Predictor(probe, decoding=detector.decoding)
    for seed in (11, 12):  # scenes the export did not check
        scene = render_scene(seed)
        reference = predictor.predict(scene.rgb, scene.text)
        detection = detector.detect(scene.rgb, scene.text)
        assert reference.grasps and detection.grasps
        assert same_grasp(reference.grasps[0], detection.grasps[0])
        assert len(detection.grasps) == len(reference.grasps)
        np.testing.assert_allclose(detection.mask_prob, reference.mask_prob, atol=1e-4)


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_bundles_load_and_run(exported, precision):
    bundle, _ = exported
    detector = GraspDetector(bundle, providers=["cpu"], precision=precision)
    assert detector.precision == precision
    scene = render_scene(13)
    detection = detector.detect(scene.rgb, scene.text)
    assert detection.mask_prob.shape == scene.rgb.shape[:2]
    assert all(np.isfinite(list(g.to_dict().values())).all() for g in detection.grasps)
    assert detection.grasps or detection.reason


def test_auto_precision_uses_int8_on_cpu_only_when_it_agreed_with_fp32(exported, tmp_path):
    bundle, _ = exported
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = read_manifest(copy)
    for agreement, expected in ((1.0, "int8"), (0.5, "fp32")):
        reports = [dict(r) for r in manifest.parity["reports"]]
        for report in reports:
            report["agreement"] = agreement
        write_manifest(copy, replace(manifest, parity={**manifest.parity, "reports": reports}))
        detector = GraspDetector(copy, providers=["cpu"], verify=False)
        assert detector.precision == expected
        assert detector.recorded_agreement("int8") == agreement
    assert GraspDetector(copy, providers=["cpu"], precision="int8").precision == "int8"


def test_failed_parity_aborts_and_leaves_nothing(probe, tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="do not reproduce PyTorch"):
        export_bundle(probe, out, ExportOptions(parity_scenes=1, atol=1e-12))
    assert list(tmp_path.iterdir()) == []  # neither the bundle nor a partial folder


def test_existing_bundle_needs_overwrite(exported, probe):
    bundle, _ = exported
    with pytest.raises(InputError, match="--overwrite"):
        export_bundle(probe, bundle, ExportOptions(parity_scenes=1))
    assert read_manifest(bundle).model == "lggd-tiny"  # untouched


def test_missing_checkpoint_is_a_clear_cli_error(tmp_path, capsys):
    code = main(["export", "--checkpoint", str(tmp_path / "none"), "--out", str(tmp_path / "b")])
    assert code == 2
    assert "not found" in capsys.readouterr().err


def test_graph_export_keeps_module_in_eval_and_the_mha_fast_path_setting(probe, tmp_path):
    from langgrasp.export.graphs import export_text_graph

    fastpath = torch.backends.mha.get_fastpath_enabled()
    export_text_graph(probe, tmp_path / "text.onnx")
    assert not probe.training
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def test_finalize_caps_the_ir_version():
    node = helper.make_node("Relu", ["x"], ["y"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = MAX_IR_VERSION + 4  # what a newer onnx writes
    assert finalize(model, "doc").ir_version == MAX_IR_VERSION
    ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _graph(nodes, inputs=("x",), outputs=("y",), initializers=()):
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in inputs]
    results = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2]) for n in outputs]
    graph = helper.make_graph(nodes, "g", values, results, initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_topological_sort_restores_producer_order():
    nodes = [
        helper.make_node("Relu", ["b"], ["y"], name="last"),
        helper.make_node("Neg", ["a"], ["b"], name="middle"),
        helper.make_node("Abs", ["x"], ["a"], name="first"),
    ]
    model = _graph(nodes)
    topological_sort(model.graph)
    assert [n.name for n in model.graph.node] == ["first", "middle", "last"]
    onnx.checker.check_model(model)
    cyclic = _graph(
        [helper.make_node("Neg", ["y"], ["y2"]), helper.make_node("Abs", ["y2"], ["y"])]
    )
    with pytest.raises(ExportError, match="cycle"):
        topological_sort(cyclic.graph)


def test_non_finite_nodes_follow_masks_down_to_the_softmax():
    minus_inf = helper.make_tensor("minus_inf", TensorProto.FLOAT, [2], [-np.inf, 0.0])
    nodes = [
        helper.make_node("Add", ["x", "minus_inf"], ["masked"], name="mask_add"),
        helper.make_node("Softmax", ["masked"], ["p"], name="softmax"),
        helper.make_node("Relu", ["p"], ["y"], name="after"),
    ]
    model = _graph(nodes, initializers=[minus_inf])
    assert sorted(non_finite_nodes(model)) == ["mask_add", "softmax"]


def test_output_tail_nodes_stop_at_the_last_convolutions():
    weight = helper.make_tensor("w", TensorProto.FLOAT, [1, 1, 1, 1], [1.0])
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["f"], name="backbone"),
        helper.make_node("Relu", ["f"], ["g"], name="act"),
        helper.make_node("Conv", ["g", "w"], ["h"], name="head"),
        helper.make_node("Conv", ["h", "w"], ["d"], name="refine"),
        helper.make_node("Add", ["h", "d"], ["r"], name="residual"),
        helper.make_node("Concat", ["r", "h"], ["y"], name="concat", axis=1),
    ]
    model = _graph(nodes, initializers=[weight])
    assert sorted(output_tail_nodes(model)) == ["concat", "head", "refine", "residual"]
