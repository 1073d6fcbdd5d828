"""Data and numerics that users' datasets throw at a detector: it trains or filters, never NaN.
Non-finite values stop training with a FloatingPointError and never crash the process."""

import json

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_train_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.modeling import build_model
from detectron2.structures import ImageList
from detectron2.utils.events import EventStorage
from helpers import (
    CUDA_PARAM,
    load_cfg,
    run_nan_offset_check,
    run_train_net,
    small_cfg,
    train_net_args,
    two_box_batch,
)
from helpers import fcos_dw_losses as dw_losses
from PIL import Image
from torch.utils._python_dispatch import TorchDispatchMode

from dual_weighting.checkpoint import DWCheckpointer


def write_messy_dataset(root):
    """COCO json whose images hold every kind of awkward annotation, and awkward images."""
    images, annotations = [], []

    def add_image(name, size, mode="RGB", boxes=(), crowd=False):
        w, h = size
        rng = np.random.default_rng(len(images))
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 255, (h, w, channels), dtype=np.uint8).squeeze()
        Image.fromarray(pixels, mode=mode).save(root / name)
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for box in boxes:
            category = 1 + len(annotations) % 2
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                 "bbox": list(box), "area": abs(box[2] * box[3]), "iscrowd": int(crowd)}
            )  # fmt: skip

    add_image("no_annotations.png", (120, 90))
    add_image("only_crowd.png", (120, 90), boxes=[(10, 10, 50, 40)], crowd=True)
    add_image(
        "degenerate.png",
        (120, 90),
        boxes=[(10, 10, 0, 30), (20, 20, 30, 0), (60, 50, -20, -10), (30, 30, 40, 30)],
    )
    add_image("outside.png", (120, 90), boxes=[(100, 70, 80, 60), (-30, -20, 50, 40)])
    add_image("tiny_boxes.png", (120, 90), boxes=[(5.2, 6.1, 1.5, 2.0), (40, 40, 3, 3)])
    rng = np.random.default_rng(0)
    many = [(float(x), float(y), 6.0, 5.0) for x, y in rng.uniform(0, 150, (320, 2))]
    add_image("crowded.png", (160, 160), boxes=many)
    add_image("gray.png", (100, 75), mode="L", boxes=[(10, 10, 40, 30)])
    add_image("rgba.png", (100, 75), mode="RGBA", boxes=[(20, 15, 50, 40)])
    add_image("smaller_than_p7.png", (60, 45), boxes=[(5, 5, 30, 30)])
    add_image("odd_size.png", (97, 131), boxes=[(10, 20, 60, 90)])
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    json_file = root / "messy.json"
    json_file.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return json_file


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy")
    json_file = write_messy_dataset(root)
    if "dw_messy" not in DatasetCatalog.list():
        register_coco_instances("dw_messy", {}, str(json_file), str(root))
    return "dw_messy"


def test_awkward_images_are_filtered_or_train_with_finite_losses(messy, caplog):
    cfg = small_cfg("DATASETS.TRAIN", f"('{messy}',)", "SOLVER.IMS_PER_BATCH", "1")
    with caplog.at_level("INFO"):
        loader = build_detection_train_loader(cfg)
    # detectron2's usual filter drops the images without usable (non-crowd) annotations, and
    # says how many.
    assert "Removed 2 images with no usable annotations. 8 images left." in caplog.text

    torch.manual_seed(0)
    model = build_model(cfg).train()
    mapper = DatasetMapper(cfg, is_train=True)
    records = DatasetCatalog.get(messy)
    seen = set()
    with EventStorage():
        for record in records:
            if not any(a.get("iscrowd", 0) == 0 for a in record["annotations"]):
                continue
            batch = [mapper(record)]
            losses = model(batch)
            total = sum(losses.values())
            assert torch.isfinite(total), (record["file_name"], losses)
            total.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            assert all(torch.isfinite(g).all() for g in grads), record["file_name"]
            model.zero_grad()
            seen.add(record["file_name"].rsplit("/", 1)[-1])
    assert len(seen) == 8
    del loader


@pytest.mark.parametrize("device", ["cpu", CUDA_PARAM])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("deformable", [False, True])
def test_autocast_gives_finite_losses_and_gradients(device, dtype, deformable):
    torch.manual_seed(0)
    # Box refine and DCN run torchvision's deform_conv2d, whose CPU kernel has no half version;
    # CUDA autocast refuses binary_cross_entropy (the losses).
    opts = ["MODEL.DW.BOX_REFINE", str(deformable), "MODEL.DW.DCN_ON_LAST_CONV", str(deformable)]
    model = build_model(small_cfg(*opts, "MODEL.DEVICE", device)).train()
    with EventStorage(), torch.autocast(device, dtype=dtype):
        losses = model(two_box_batch())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_300_boxes_at_1333x800_never_build_points_x_boxes_x_classes():
    torch.manual_seed(0)
    height, width, num_classes, num_boxes = 800, 1344, 80, 300
    points, strides = [], []
    for s in (8, 16, 32, 64, 128):
        ys, xs = torch.meshgrid(
            (torch.arange(-(-height // s)) + 0.5) * s,
            (torch.arange(-(-width // s)) + 0.5) * s,
            indexing="ij",
        )
        points.append(torch.stack((xs.flatten(), ys.flatten()), 1))
        strides.append(torch.full((xs.numel(),), float(s)))
    points, strides = torch.cat(points), torch.cat(strides)
    num_points = len(points)
    xy = torch.rand(num_boxes, 2) * torch.tensor([width - 100.0, height - 100.0])
    boxes = torch.cat((xy, xy + 20 + torch.rand(num_boxes, 2) * 300), 1)
    cls_logits = torch.randn(1, num_points, num_classes, requires_grad=True)
    ctr_logits = torch.randn(1, num_points, requires_grad=True)
    box_ltrb = (torch.rand(1, num_points, 4) * 100).requires_grad_()

    with LargestTensor() as record:
        losses = dw_losses(
            points, strides, cls_logits, ctr_logits, box_ltrb,
            [boxes], [torch.randint(0, num_classes, (num_boxes,))],
        )  # fmt: skip
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    # The largest tensors are the (N, P, C) scores and the (N, P, G) inside mask, far below
    # the P x G x C = 1.5e9 elements a dense per-class assignment would need.
    assert num_points * num_classes <= record.largest  # the scores: the recording works
    assert record.largest <= max(num_points * num_classes, num_points * num_boxes)
    assert record.largest < num_points * num_boxes * num_classes / 50


def test_truncated_and_foreign_checkpoints_fail_clearly(tmp_path):
    model = build_model(small_cfg())
    good = tmp_path / "good.pth"
    DWCheckpointer(model, str(tmp_path)).save("good")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(RuntimeError, match="truncated.pth"):
        DWCheckpointer(model).load(str(truncated))
    foreign = tmp_path / "foreign.pth"
    torch.save({"model": {"classifier.weight": torch.zeros(3)}}, foreign)
    with pytest.raises(KeyError, match="model weights are missing"):
        DWCheckpointer(model, strict=True).load(str(foreign))


def test_checkpoint_of_the_other_family_names_the_mismatched_keys(tmp_path, caplog):
    plain = build_model(small_cfg())
    DWCheckpointer(plain, str(tmp_path)).save("plain")
    refine = build_model(small_cfg("MODEL.DW.BOX_REFINE", "True"))
    with pytest.raises(KeyError, match=r"head\.box_refine_offsets\.(bias|weight)"):
        DWCheckpointer(refine, strict=True).load(str(tmp_path / "plain.pth"))
    # Not strict (training from partial weights): loads, and detectron2 logs what is missing.
    with caplog.at_level("WARNING"):
        DWCheckpointer(refine).load(str(tmp_path / "plain.pth"))
    assert "not found in the checkpoint" in caplog.text
    assert "head.box_refine_offsets" in caplog.text


def test_nan_offsets_give_nan_cells_instead_of_a_segmentation_fault():
    proc = run_nan_offset_check()
    # -11 (SIGSEGV) is the regression this guards against.
    assert proc.returncode == 0, f"exit code {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip().endswith("checked")


def test_non_finite_boxes_are_dropped_and_finite_ones_kept():
    model = build_model(small_cfg()).eval()
    images = ImageList(torch.zeros(1, 3, 96, 128), [(96, 128)])
    with torch.no_grad():
        features = [model.backbone(images.tensor)[f] for f in model.head_in_features]
        logits, box_ltrb, centerness = model.head(features)
    # Background everywhere, except five p3 points (stride 8) of class 1, score ~1, each with a
    # box of 8 px on every side: at A (1, 1) the left side is infinite, at B (1, 5) the top is
    # NaN, at C (3, 2) the score is NaN; D (8, 3) and E (6, 12) are finite and far apart.
    for x in logits:
        x.fill_(-20.0)
    for x in centerness:
        x.fill_(20.0)
    for x in box_ltrb:
        x.fill_(8.0)
    for i, j in [(1, 1), (1, 5), (3, 2), (8, 3), (6, 12)]:
        logits[0][0, 1, i, j] = 20.0
    box_ltrb[0][0, 0, 1, 1] = float("inf")
    box_ltrb[0][0, 1, 1, 5] = float("nan")
    logits[0][0, 1, 3, 2] = float("nan")
    (result,) = model.forward_inference(images, features, [logits, box_ltrb, centerness])
    # Box of point (i, j): centre ((j + 0.5) * 8, (i + 0.5) * 8), 8 px to each side.
    expected = torch.tensor([[20.0, 60, 36, 76], [92, 44, 108, 60]])
    order = result.pred_boxes.tensor[:, 0].argsort()
    torch.testing.assert_close(result.pred_boxes.tensor[order], expected)
    assert result.pred_classes.tolist() == [1, 1]


def test_non_finite_input_image_is_named_at_inference():
    model = build_model(small_cfg()).eval()
    finite = torch.rand(3, 96, 128) * 255
    nan_image, inf_image = finite.clone(), finite.clone()
    nan_image[1, 5, 7] = float("nan")
    inf_image[0, 0, 0] = float("inf")
    batch = [
        {"image": finite},
        {"image": nan_image, "file_name": "frames/b.jpg"},
        {"image": inf_image},
        {"image": finite.to(torch.uint8)},
    ]
    with pytest.raises(
        ValueError, match=r"batched_inputs\[1\] \(frames/b.jpg\), batched_inputs\[2\]\."
    ):
        model(batch)
    with torch.no_grad():
        assert len(model([batch[0], batch[3]])) == 2
    # Training stops on the predictions instead, naming the iteration.
    model.train()
    batch = two_box_batch()
    batch[0]["image"][0, 10, 10] = float("nan")
    with EventStorage(start_iter=5), pytest.raises(FloatingPointError, match="iteration=5"):
        model(batch)


@pytest.mark.slow
def test_divergent_training_stops_naming_the_iteration_and_resumes_from_the_last_checkpoint(
    shapes_dataset, tmp_path
):
    data = shapes_dataset
    out = tmp_path / "run"
    # Box refine and DCN towers, whose NaN offsets used to segfault the process. The learning
    # rate is multiplied by 1e10 at iteration 2: that step makes the weights non-finite, so the
    # predictions of iteration 3 are; checkpoints after iterations 1 and 3. No warm-up: it would
    # ramp towards the multiplied rate from iteration 0.
    opts = (
        "MODEL.DW.BOX_REFINE", "True", "MODEL.DW.DCN_ON_LAST_CONV", "True",
        "SOLVER.STEPS", "(2,)", "SOLVER.GAMMA", "1e10", "SOLVER.WARMUP_ITERS", "0",
        "SOLVER.CHECKPOINT_PERIOD", "2",
        "TEST.EVAL_PERIOD", "0", "DATASETS.TEST", "()",
    )  # fmt: skip
    proc = run_train_net(train_net_args(data, out, *opts, max_iter=6), check=False)
    assert proc.returncode == 1, proc.stderr[-3000:]  # not -11, a segmentation fault
    assert "FloatingPointError: DW-FCOS predictions became infinite or NaN at iteration=3" in (
        proc.stderr
    )
    assert (out / "last_checkpoint").read_text().strip() == "model_0000001.pth"

    model = build_model(load_cfg(out / "config.yaml"))
    extra = DWCheckpointer(model, strict=True).load(str(out / "model_0000001.pth"))
    assert extra["iteration"] == 1
    assert all(torch.isfinite(p).all() for p in model.state_dict().values())

    # detectron2's resume restores the schedule too: training goes on from iteration 2 and stops
    # again at the same iteration, with the same error.
    proc = run_train_net(["--resume", *train_net_args(data, out, *opts, max_iter=6)], check=False)
    log = proc.stdout + proc.stderr
    assert f"Loading from {out / 'model_0000001.pth'}" in log
    assert "Starting training from iteration 2" in log
    assert proc.returncode == 1
    assert "infinite or NaN at iteration=3" in proc.stderr
