"""Exported DW-FCOS against PyTorch: TorchScript (by tracing) and ONNX (run by ONNX Runtime) give
the same detections as the PyTorch model on generated images of two sizes, one of them not the
size traced at; box refine and DCNv2 included. Also the NMS tie rule of the exported graph, what
cannot be exported, COCO evaluation of an exported model and tools/export_model.py.

"The same detections": same number and classes, boxes within 1e-4 of the image's longer side
and scores within 1e-4, paired by value (:func:`dual_weighting.export.match_detections`, tested
below on hand-made cases). Measured: TorchScript boxes within 3e-4 px (box refine's traced read
rounds differently), scores identical; ONNX Runtime boxes within 3.4e-3 px (box refine reading
at the feature map's edge magnifies float32 differences), scores within 3e-6. The models have
random weights, with the prediction layers and the deformable offsets drawn wider than at
initialisation, so that scores spread and deformable reads land between cells, as in a trained
model.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from detectron2.evaluation import inference_on_dataset
from detectron2.modeling import build_model
from detectron2.structures import Boxes, pairwise_iou
from helpers import (
    DEMO_CONFIG,
    EXPORT_MODELS,
    NMS_TIE,
    REPO,
    TRACE_SIZE,
    export_cfg,
    noise_image,
    random_export_model,
)

from dual_weighting.data import register_synthetic
from dual_weighting.engine import DWTrainer
from dual_weighting.export import (
    ExportError,
    OnnxRuntimeDetector,
    check_onnx_runtime,
    deformable_layers,
    detections,
    evaluate_exported,
    export_torchscript,
    load_torchscript,
    match_detections,
    script_model,
)
from dual_weighting.export.quantize import quantize_static_int8, write_precision
from dual_weighting.layers import traceable_batched_nms
from sample_data.shapes import generate_synthetic_coco

pytest.importorskip("onnxruntime", reason="needs the export extra: pip install -e .[export]")
onnx = pytest.importorskip("onnx", reason="needs the export extra: pip install -e .[export]")

OTHER_SIZE = (147, 213)


def graph_ops(fmt, folder):
    """Which of NMS, grid_sample and deformable convolution the exported graph holds."""
    if fmt == "torchscript":
        graph = str(load_torchscript(folder / "model.ts").module.inlined_graph)
        names = {"nms": "torchvision::nms", "grid_sample": "aten::grid_sampler",
                 "deform_conv": "torchvision::deform_conv2d"}  # fmt: skip
        return {op for op, node in names.items() if node in graph}
    types = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    names = {"nms": "NonMaxSuppression", "grid_sample": "GridSample", "deform_conv": "DeformConv"}
    return {op for op, node in names.items() if node in types}


# ONNX export (torch.export) takes 0.5-2 minutes a model on 2 cores: the demo model and the one
# with both DCNv2 and box refine cover every layer the others have.
# ONNX export (torch.export) takes about a minute a model on a CPU: slow.
ONNX = pytest.param("onnx", marks=pytest.mark.slow)
CASES = [(name, "torchscript") for name in EXPORT_MODELS] + [
    pytest.param("demo", "onnx", marks=pytest.mark.slow),
    pytest.param("R50_DCN_refine", "onnx", marks=pytest.mark.slow),
]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name,fmt", CASES)
def test_exported_detections_equal_pytorch(name, fmt, exported):
    model, detector, raised, folder = exported(name, fmt)
    # Nothing of ours uses a deprecated export path (the TorchScript-based ONNX exporter).
    ours = [w for w in raised if str(REPO) in w.filename and ".venv" not in w.filename]
    assert not [w for w in ours if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    # The graph holds the NMS, the refine read as grid_sample and DCNv2 as deformable convs.
    ops = graph_ops(fmt, folder)
    refine, dcn = model.head.box_refine, bool(deformable_layers(model))
    assert name.endswith("refine") == refine and ("DCN" in name) == dcn
    assert ops >= {"nms"} and ("grid_sample" in ops) == refine and ("deform_conv" in ops) == dcn
    for size, seed in [(TRACE_SIZE, 1), (OTHER_SIZE, 2)]:
        x = noise_image(size, seed)
        with torch.no_grad():
            expected = detections(model, x)
        boxes, scores, classes = detector(x)
        assert len(expected[0]) >= 20, "enough detections to compare"
        assert classes.dtype == torch.int64 and boxes.shape == (len(scores), 4)
        # Boxes in the input image's pixels, clipped to it.
        assert boxes[:, 2].max() <= size[1] and boxes[:, 3].max() <= size[0]
        match = match_detections(expected, (boxes, scores, classes), size)
        assert match.equal, f"{size}: {match}"

    # Tiny and very elongated images, of sizes no multiple of the stride, from the same file.
    for size, seed in [((2, 2), 4), ((5, 700), 5), ((33, 31), 6)]:
        x = noise_image(size, seed)
        with torch.no_grad():
            expected = detections(model, x)
        assert match_detections(expected, detector(x), size).equal, size

    # A non-finite image: where the eager model names it (test_robustness.py), the exported
    # graph, which cannot raise, returns no detections.
    nan_image = noise_image(OTHER_SIZE, seed=3)
    nan_image[1, 10, 20] = float("nan")
    graph = detector.module if fmt == "torchscript" else onnx_graph(detector)
    assert [tuple(t.shape) for t in graph(nan_image)] == [(0, 4), (0,), (0,)]


def onnx_graph(detector):
    """The ONNX Runtime session of ``detector`` without the input check."""

    def run(x):
        return tuple(torch.from_numpy(t) for t in detector.session.run(None, {"image": x.numpy()}))

    return run


@pytest.mark.parametrize("fmt", ["torchscript", ONNX])
def test_bad_inputs_to_an_exported_model_are_refused_by_name(fmt, exported):
    _, detector, _, _ = exported("demo", fmt)
    good = noise_image(OTHER_SIZE, seed=1)
    nan = good.clone()
    nan[0, 3, 4] = float("nan")
    bad = {
        r"one image \(3, H, W\), got shape \(4, 147, 213\)": torch.cat((good, good[:1])),
        r"one image \(3, H, W\) \(one image, not a batch\)": good[None],
        "float32 pixel values, got uint8": good.to(torch.uint8),
        "float32 pixel values, got float64": good.double(),
        "at least 2x2 px, got 0x213": good[:, :0],
        "at least 2x2 px, got 1x213": good[:, :1],
        "infinite or NaN pixels": nan,
    }
    for message, x in bad.items():
        with pytest.raises(ValueError, match=message):
            detector(x)
    # The graph itself, without the check, fails on a wrong channel count or dtype with the
    # runtime's own error (never a crash or a silent result).
    graph = detector.module if fmt == "torchscript" else onnx_graph(detector)
    for x in (good[:2], good.double()):
        with pytest.raises(Exception):  # noqa: B017  (TorchScript and ONNX Runtime differ)
            graph(x)
    assert len(detector(good)[0]) > 0


class TracedNMS(torch.nn.Module):
    def forward(self, boxes, scores, classes):
        return traceable_batched_nms(boxes, scores, classes, 0.6)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_nms_keeps_exact_ties_as_the_release(fmt, tmp_path):
    # helpers.NMS_TIE: IoU 0.6 exactly, a tie that the release's float32 rule keeps at threshold
    # 0.6 and torchvision's drops (test_nms.py). A third box of another class overlaps the first
    # fully but stays; a fourth of the first's class (IoU 0.94) goes.
    boxes = torch.cat([NMS_TIE, torch.tensor([[0.0, 0, 320, 320], [0, 0, 300, 320]])])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    classes = torch.tensor([1, 1, 0, 1])
    args = (boxes, scores, classes)
    module = TracedNMS()
    if fmt == "torchscript":
        run = torch.jit.trace(module, args)
    else:
        n = torch.export.Dim("n", min=0)
        torch.onnx.export(
            module, args, dynamo=True, opset_version=18, verbose=False,
            input_names=["boxes", "scores", "classes"],
            dynamic_shapes={"boxes": {0: n}, "scores": {0: n}, "classes": {0: n}},
        ).save(str(tmp_path / "nms.onnx"))  # fmt: skip
        session = OnnxRuntimeDetector(tmp_path / "nms.onnx").session

        def run(*inputs):
            feed = dict(zip(["boxes", "scores", "classes"], (t.numpy() for t in inputs)))
            return torch.from_numpy(session.run(None, feed)[0])

    assert run(*args).tolist() == [0, 1, 2]
    # Traced with boxes, run without: an empty result, not a failure.
    empty = (torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert run(*empty).tolist() == []


def test_scripting_is_refused_with_the_reason():
    model = build_model(export_cfg(DEMO_CONFIG)).eval()
    with pytest.raises(ExportError, match=r"scripting .* torch\.jit\.script fails .* tracing"):
        script_model(model)


def test_onnx_runtime_without_deform_conv_names_the_dcn_layers(monkeypatch):
    import onnxruntime

    model = build_model(export_cfg(EXPORT_MODELS["R50_DCN_refine"]))
    check_onnx_runtime(model)  # the installed one (>= 1.25) runs DeformConv
    monkeypatch.setattr(onnxruntime, "__version__", "1.24.4")
    with pytest.raises(ExportError, match=r"backbone\.bottom_up\.res3\.0\.conv2, .* DeformConv"):
        check_onnx_runtime(model)
    check_onnx_runtime(build_model(export_cfg(EXPORT_MODELS["R50_refine"])))  # no DCN: fine


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Four generated validation images with their COCO json, registered as dw_tiny_val."""
    root = tmp_path_factory.mktemp("tiny")
    generate_synthetic_coco(root, num_train=1, num_val=4, image_size=(192, 256), seed=1)
    register_synthetic(root, prefix="dw_tiny")
    return root


def coco_results(folder):
    """{image id: (boxes XYXY, scores, classes)} of COCOEvaluator's coco_instances_results.json."""
    by_image = {}
    for r in json.loads((folder / "coco_instances_results.json").read_text()):
        x, y, w, h = r["bbox"]
        by_image.setdefault(r["image_id"], []).append(
            ([x, y, x + w, y + h], r["score"], r["category_id"])
        )
    return {
        k: (
            torch.tensor([b for b, _, _ in v]),
            torch.tensor([s for _, s, _ in v]),
            torch.tensor([c for _, _, c in v]),
        )
        for k, v in by_image.items()
    }


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_evaluation_of_the_exported_model_equals_pytorchs(tiny_dataset, tmp_path):
    cfg = export_cfg(DEMO_CONFIG, "DATASETS.TEST", '("dw_tiny_val",)')
    model = random_export_model(DEMO_CONFIG)
    exported = export_torchscript(model, noise_image(TRACE_SIZE, seed=0))
    loader = DWTrainer.build_test_loader(cfg, "dw_tiny_val")
    evaluator = DWTrainer.build_evaluator(cfg, "dw_tiny_val", str(tmp_path / "eager"))
    expected = inference_on_dataset(model, loader, evaluator)["bbox"]
    actual = evaluate_exported(cfg, exported, output_dir=str(tmp_path / "ts"))["bbox"]
    assert actual == pytest.approx(expected, abs=1e-9, nan_ok=True)
    # The detections COCOeval scored, in the original images' pixels (the loader resizes the
    # 256x192 images to 320x240): the same for every image.
    eager, ts = coco_results(tmp_path / "eager"), coco_results(tmp_path / "ts")
    assert sorted(eager) == sorted(ts) and len(eager) == 4
    for image_id, dets in eager.items():
        assert len(dets[0]) >= 20
        assert match_detections(dets, ts[image_id], (192, 256)).equal, image_id


def test_importing_the_package_needs_neither_onnx_nor_onnxruntime():
    # None in sys.modules makes an import fail, as if the package were not installed.
    code = (
        "import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None; "
        "import dual_weighting, dual_weighting.export, benchmarks.quantization; "
        "print('imported')"
    )
    # Run in tools/, where the (not installed) benchmarks package is, as tools/benchmark.py runs.
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO / "tools"
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "imported", proc.stderr[-2000:]


def test_match_detections_pairs_by_value_within_the_tolerances():
    boxes = torch.tensor([[10.0, 20, 110, 220], [50, 60, 70, 80], [0, 0, 5, 5]])
    dets = (boxes, torch.tensor([0.9, 0.5, 0.5]), torch.tensor([1, 2, 1]))
    size = (200, 250)  # box tolerance 1e-4 * 250 = 0.025 px
    # The two detections of equal score in the other order: equal.
    swapped = tuple(t[[0, 2, 1]] for t in dets)
    assert match_detections(dets, swapped, size).equal
    nudged = (boxes + torch.tensor([0.02, 0, 0, 0]), dets[1] + 5e-5, dets[2])
    match = match_detections(dets, nudged, size)
    assert match.equal and match.box_diff == pytest.approx(0.02, abs=1e-6)
    for other in [
        (boxes + torch.tensor([0.03, 0, 0, 0]), dets[1], dets[2]),  # a box moved too far
        (boxes, dets[1] + torch.tensor([0, 2e-4, 0]), dets[2]),  # a score too far
        (boxes, dets[1], torch.tensor([1, 2, 2])),  # another class
        tuple(t[:2] for t in dets),  # a detection missing
    ]:
        assert not match_detections(dets, other, size).equal


@pytest.mark.slow
def test_tool_exports_to_onnx_and_evaluates(tiny_dataset, tmp_path):
    json_file = tiny_dataset / "annotations" / "instances_val.json"
    assert len(json.loads(json_file.read_text())["images"]) == 4
    out = tmp_path / "export"
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "tools" / "export_model.py"),
            "--config-file", str(DEMO_CONFIG), "--format", "onnx", "--output", str(out),
            "--run-eval", "--quantize", "static", "--calibration-images", "2",
            "--register-coco", f"tiny={json_file}:{tiny_dataset / 'val'}",
            # Random weights: every candidate of threshold 0, few of them (fewer near-ties).
            "--opts", "MODEL.WEIGHTS", "", "MODEL.DW.SCORE_THRESH_TEST", "0.0",
            "MODEL.DW.TOPK_CANDIDATES_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "20",
            "DATASETS.TEST", '("tiny",)', "DATASETS.TRAIN", '("tiny",)',
        ],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.onnx").is_file()
    lines = [line for line in proc.stdout.splitlines() if "against PyTorch" in line]
    assert len(lines) == 2 and all("equal: 20 detections" in line for line in lines), lines
    # The int8 model, calibrated on 2 images, written and evaluated.
    int8 = out / "model_int8_static.onnx"
    assert int8.is_file() and int8.stat().st_size < 0.4 * (out / "model.onnx").stat().st_size
    assert "calibrated on 2 images of tiny" in proc.stdout
    assert "copypaste: AP,AP50" in proc.stdout + proc.stderr


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["int8_static", "int8_dynamic"])
def test_int8_models_are_smaller_and_detect_much_the_same(precision, exported, tmp_path):
    model, detector, _, folder = exported("demo", "onnx")
    src, dst = folder / "model.onnx", tmp_path / f"{precision}.onnx"
    calibration = [noise_image(TRACE_SIZE, seed=s) for s in (10, 11)]
    write_precision(precision, src, dst, calibration)
    # int8 convolution weights: about a quarter of the file.
    assert dst.stat().st_size < 0.4 * src.stat().st_size
    quantized = OnnxRuntimeDetector(dst, threads=1)
    x = noise_image(OTHER_SIZE, seed=2)
    boxes, scores, classes = detector(x)
    q_boxes, q_scores, q_classes = quantized(x)
    assert q_boxes.shape == (len(q_scores), 4) and q_classes.dtype == torch.int64
    assert q_boxes[:, 2].max() <= OTHER_SIZE[1] and q_boxes[:, 3].max() <= OTHER_SIZE[0]
    # Most of the float32 model's 20 best detections have an int8 one of their class at IoU
    # >= 0.5 (a random model's scores are close together, so the order moves more than a
    # trained model's would).
    iou = pairwise_iou(Boxes(boxes[:20]), Boxes(q_boxes))
    same = classes[:20, None] == q_classes[None]
    found = ((iou >= 0.5) & same).any(dim=1).float().mean()
    assert found >= 0.5, found


def test_quantization_refuses_an_unknown_precision_and_an_empty_calibration(tmp_path):
    with pytest.raises(ValueError, match="Unknown precision 'int4'"):
        write_precision("int4", tmp_path / "a.onnx", tmp_path / "b.onnx")
    with pytest.raises(ValueError, match="at least one calibration image"):
        quantize_static_int8(tmp_path / "a.onnx", tmp_path / "b.onnx", [])
