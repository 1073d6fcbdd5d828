"""DW-FCOS through detectron2's own deployment pieces: ``DefaultPredictor`` on a DW config, and the
TorchScript steps of detectron2's ``tools/deploy/export_model.py`` (``TracingAdapter`` with the
model's own ``forward``, ``torch.jit.trace``, ``dump_torchscript_IR``, and the adapter's
``outputs_schema`` turning the traced outputs back into ``Instances``)."""

import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor
from detectron2.export import TracingAdapter, dump_torchscript_IR
from detectron2.modeling import build_model
from helpers import DEMO_CONFIG, load_cfg

from dual_weighting.export import match_detections


def lively_model(cfg):
    """A random DW-FCOS whose scores spread (wider prediction layers), in eval mode."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for conv in (model.head.cls_logits, model.head.centerness, model.head.box):
            conv.weight.normal_(std=0.1)
    return model


def as_tuple(instances):
    return instances.pred_boxes.tensor, instances.scores, instances.pred_classes


def test_default_predictor_runs_a_dw_config(tmp_path):
    cfg = load_cfg(DEMO_CONFIG)
    model = lively_model(cfg)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    cfg.MODEL.WEIGHTS = str(tmp_path / "model.pth")
    predictor = DefaultPredictor(cfg)
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    result = predictor(bgr)["instances"]
    # By hand: the config's RGB input and test resize (shorter side 256, longer at most 320:
    # 200x300 -> 213x320), then the model, detections in the 200x300 original.
    rgb = bgr[:, :, ::-1]
    resized = T.ResizeShortestEdge(256, 320).get_transform(rgb).apply_image(rgb)
    assert resized.shape[:2] == (213, 320)
    image = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
    with torch.no_grad():
        (expected,) = model([{"image": image, "height": 200, "width": 300}])
    expected = expected["instances"]
    assert result.image_size == (200, 300) and len(expected) >= 20
    assert match_detections(as_tuple(expected), as_tuple(result), (200, 300)).equal


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_detectron2_tracing_steps_give_the_models_instances(tmp_path):
    model = lively_model(load_cfg(DEMO_CONFIG))
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, 192, 256, generator=g) * 255
    # detectron2's export_model.py: the adapter over the model's own forward (no inference
    # function), traced, saved, its IR dumped.
    adapter = TracingAdapter(model, [{"image": image}])
    traced = torch.jit.trace(adapter, (image,))
    traced.save(str(tmp_path / "model.ts"))
    dump_torchscript_IR(traced, str(tmp_path))
    assert (tmp_path / "model_ts_IR.txt").stat().st_size > 0
    loaded = torch.jit.load(str(tmp_path / "model.ts"))
    # At another size than traced: the traced outputs, rebuilt by the adapter's schema, are the
    # Instances the model returns.
    other = torch.rand(3, 147, 213, generator=g) * 255
    (rebuilt,) = adapter.outputs_schema(loaded(other))
    with torch.no_grad():
        (expected,) = model([{"image": other}])
    expected, rebuilt = expected["instances"], rebuilt["instances"]
    # (The traced size comes back as a tensor.)
    assert len(expected) >= 20 and [int(v) for v in rebuilt.image_size] == [147, 213]
    assert match_detections(as_tuple(expected), as_tuple(rebuilt), (147, 213)).equal
