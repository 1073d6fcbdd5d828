"""tools/demo.py and tools/visualize_assignment.py on a tiny generated dataset, and the pure
assignment maps behind the latter: hand-computed values and agreement with ``dw_losses``."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.events import EventStorage
from PIL import Image

from dual_weighting import dw_losses
from dual_weighting.assignment_maps import dw_assignment_maps, split_levels, strong_positives
from dual_weighting.data import CLASS_NAMES, generate_synthetic_coco

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs" / "dw_R_18_FPN_synthetic_demo.yaml")
# Small inputs: the generated 64 x 96 images are fed at their own size.
SMALL = ["INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"]
# A few detections at threshold 0 (random init scores ~0.01): drawing 100 labels is slow.
FEW = ["MODEL.DW.MAX_DETECTIONS_PER_IMAGE", "3"]
DATASET = "test_tools_tiny_train"


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_tool("demo")
visualize_assignment = _load_tool("visualize_assignment")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Two 64 x 96 training images and one validation image, registered as DATASET."""
    root = tmp_path_factory.mktemp("tiny_synthetic")
    info = generate_synthetic_coco(
        root, num_train=2, num_val=1, image_size=(64, 96), objects_per_image=(2, 3)
    )
    yield root, f"{DATASET}={info['train']['json_file']}:{info['train']['image_root']}"
    for catalog in (DatasetCatalog, MetadataCatalog):
        if DATASET in catalog.list():
            catalog.remove(DATASET)


# ---------------------------------------------------------------------------------- demo.py


def test_demo_draws_detections_at_the_input_size(tiny, tmp_path):
    image = tiny[0] / "val" / "000001.jpg"
    out = tmp_path / "drawn.png"
    written = demo.main(
        ["--config-file", CONFIG, "--input", str(image), "--output", str(out),
         "--confidence-threshold", "0", "--opts", *SMALL, *FEW]
    )  # fmt: skip
    assert written == [str(out)]
    source, drawn = Image.open(image).convert("RGB"), Image.open(out)
    assert drawn.size == source.size
    # Boxes and labels were drawn over the image.
    assert np.abs(np.asarray(drawn, np.int16)[..., :3] - np.asarray(source, np.int16)).mean() > 5


def test_demo_prints_detections_with_class_names(tiny, capsys):
    pattern = str(tiny[0] / "val" / "*.jpg")
    demo.main(["--config-file", CONFIG, "--input", pattern, "--confidence-threshold", "0",
               "--opts", *SMALL, *FEW])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert "detections" in lines[0]
    assert lines[1:] and all(line.split()[0] in CLASS_NAMES for line in lines[1:])


def test_demo_video(tmp_path):
    cv2 = pytest.importorskip("cv2")
    video = str(tmp_path / "tiny.mp4")
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (96, 64))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(3):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()

    (path,) = demo.main(
        ["--config-file", CONFIG, "--video-input", video, "--output", str(tmp_path / "out"),
         "--confidence-threshold", "0", "--opts", *SMALL, *FEW]
    )  # fmt: skip
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert path == str(tmp_path / "out" / "tiny.mp4")
    assert len(frames) == 3 and frames[0].shape == (64, 96, 3)


# ------------------------------------------------------------------ visualize_assignment.py


def test_visualize_assignment_writes_one_png_per_image(tiny, tmp_path, capsys):
    written = visualize_assignment.main(
        ["--config-file", CONFIG, "--register-coco", tiny[1], "--dataset", DATASET,
         "--indices", "0", "1", "--max-boxes", "1", "--dpi", "50", "--output", str(tmp_path),
         "--opts", *SMALL]
    )  # fmt: skip
    assert [Path(p).name for p in written] == ["000001_assignment.png", "000002_assignment.png"]
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and min(picture.size) > 150
    assert "candidate/strong points per level: P3" in capsys.readouterr().out


def test_tool_maps_reproduce_the_training_losses(tiny):
    """The tool's forward pass and maps give exactly the losses the model trains with.

    FrozenBN (and the head's GroupNorm) behave the same in train and eval mode.
    """
    visualize_assignment.register_coco_from_spec(tiny[1])
    args = visualize_assignment.parse_args(
        ["--config-file", CONFIG, "--output", "unused",
         "--opts", *SMALL, "MODEL.RESNETS.NORM", "FrozenBN"]
    )  # fmt: skip
    cfg = visualize_assignment.setup_cfg(args)
    model = visualize_assignment.load_model(cfg)
    mapped = visualize_assignment.training_mapper(cfg)(DatasetCatalog.get(DATASET)[0])
    maps, shapes, strides = visualize_assignment.compute_assignment(model, mapped)

    model.train()
    with EventStorage(), torch.no_grad():
        losses = model([mapped])
    expected = _losses_from_maps(maps, len(mapped["instances"]))
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-5, atol=1e-7)
    assert [tuple(s) for s in shapes][0] == (8, 12) and strides == [8, 16, 32, 64, 128]


# ------------------------------------------------------------------------ assignment maps


def _losses_from_maps(maps, num_boxes):
    """The three DW losses of one image, written from the maps with the spec's formulas."""
    inside = maps["inside"]
    w_pos, p_cls, p_loc = maps["pos_weight"][inside], maps["p_cls"][inside], maps["p_loc"][inside]
    ones = torch.ones_like(p_cls)
    scores, w_neg = maps["scores"], maps["neg_weight"]
    neg = (
        w_neg
        * scores**2
        * F.binary_cross_entropy(scores, torch.zeros_like(scores), reduction="none")
    ).sum()
    return {
        "loss_cls_pos": 0.25
        * (w_pos * F.binary_cross_entropy(p_cls, ones, reduction="none")).sum()
        / max(num_boxes, 1),
        "loss_loc": 0.25
        * (w_pos * F.binary_cross_entropy(p_loc, ones, reduction="none")).sum()
        / max(num_boxes, 1),
        "loss_cls_neg": neg / (1 - w_neg).sum().clamp(min=1),
    }


def _grid(height, width, stride):
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack(((xs.reshape(-1) + 0.5) * stride, (ys.reshape(-1) + 0.5) * stride), dim=1)


def test_maps_equal_hand_computed_values():
    # One 3 x 3 level of stride 8; box (0, 0, 16, 16) of class 1 holds the four points at
    # x, y in {4, 12}, each half a stride from the centre (8, 8) along both axes.
    points = _grid(3, 3, 8).double()
    strides = torch.full((9,), 8.0, dtype=torch.float64)
    cls_logits = torch.zeros(9, 2, dtype=torch.float64)
    cls_logits[[0, 1, 3, 4], 1] = torch.tensor([2.0, 1.0, 0.0, -1.0], dtype=torch.float64)
    ctr_logits = torch.zeros(9, dtype=torch.float64)  # objectness 0.5
    ltrb = torch.ones(9, 4, dtype=torch.float64)
    ltrb[0] = torch.tensor([4.0, 4, 12, 12])  # (0, 0, 16, 16): IoU 1
    ltrb[1] = torch.tensor([12.0, 4, 4, 4])  # (0, 0, 16, 8): IoU 0.5
    ltrb[3] = torch.tensor([4.0, 8, 12, 4])  # (0, 4, 16, 16): IoU 0.75
    ltrb[4] = torch.tensor([2.0, 2, 2, 2])  # (10, 10, 14, 14): IoU 1/16
    boxes = torch.tensor([[0.0, 0, 16, 16]], dtype=torch.float64)
    maps = dw_assignment_maps(
        points, strides, cls_logits, ctr_logits, ltrb, boxes, torch.tensor([1])
    )

    bag = [0, 1, 3, 4]
    assert maps["inside"][0].nonzero().flatten().tolist() == bag
    prior = math.exp(-(0.5**2) / (2 * 1.11**2)) ** 2
    ious = [1.0, 0.5, 0.75, 1 / 16]  # the box encloses every prediction: GIoU = IoU
    p_cls = [0.5 / (1 + math.exp(-x)) for x in (2.0, 1.0, 0.0, -1.0)]
    p_loc = [math.exp(-5 * (1 - u)) for u in ious]
    v = [c * loc for c, loc in zip(p_cls, p_loc)]
    denominator = sum(math.exp(3 * x) * x * prior for x in v)
    w_pos = [math.exp(5 * x) * x * prior / denominator for x in v]
    # t = (1 - u^2) / 0.75 = (0, 1, 7/12, 1.33); min 0, max capped at 1; u < 0.5 gives 1.
    w_neg = [1e-12 / (1 + 1e-12), 1.0, (7 / 12 + 1e-12) / (1 + 1e-12), 1.0]

    def check(key, values):
        expected = torch.zeros(9, dtype=torch.float64)
        expected[bag] = torch.tensor(values, dtype=torch.float64)
        torch.testing.assert_close(maps[key][0], expected, rtol=1e-12, atol=1e-15)

    check("prior", [prior] * 4)
    check("iou", ious)
    check("p_cls", p_cls)
    check("p_loc", p_loc)
    check("pos_weight", w_pos)
    expected_neg = torch.ones(9, 2, dtype=torch.float64)
    expected_neg[bag, 1] = torch.tensor(w_neg, dtype=torch.float64)
    torch.testing.assert_close(maps["neg_weight"], expected_neg, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(maps["neg_weight_of_class"][0], expected_neg[:, 1])
    # The highest v (point 0) carries the most weight and is the only strong positive at 50%.
    assert strong_positives(maps["pos_weight"], 0.5)[0].nonzero().flatten().tolist() == [0]


def test_maps_agree_with_dw_losses():
    """Two levels, three boxes (two of one class, overlapping), predictions near box 0 so that
    some IoUs exceed 0.5: the losses written from the maps equal ``dw_losses``."""
    torch.manual_seed(0)
    points = torch.cat([_grid(8, 10, 8), _grid(4, 5, 16)])
    strides = torch.cat([torch.full((80,), 8.0), torch.full((20,), 16.0)])
    boxes = torch.tensor([[6.0, 5, 50, 40], [20, 10, 70, 60], [30, 30, 75, 62]])
    classes = torch.tensor([2, 2, 0])
    num_classes = 3
    x, y = points.unbind(1)
    exact = torch.stack((x - 6, y - 5, 50 - x, 40 - y), dim=1).clamp(min=0.5)
    ltrb = exact * torch.empty(100, 4).uniform_(0.8, 1.25)
    cls_logits = torch.randn(100, num_classes)
    ctr_logits = torch.randn(100)

    maps = dw_assignment_maps(points, strides, cls_logits, ctr_logits, ltrb, boxes, classes)
    losses = dw_losses(
        points, strides, cls_logits[None], ctr_logits[None], ltrb[None], [boxes], [classes]
    )
    for key, value in _losses_from_maps(maps, len(boxes)).items():
        torch.testing.assert_close(losses[key], value, rtol=1e-6, atol=1e-8)
    # Non-trivial: lowered negative weights, boxes of one class sharing their class column.
    assert (maps["neg_weight"][:, 2] < 0.5).any()
    assert torch.equal(maps["neg_weight_of_class"][0], maps["neg_weight_of_class"][1])
    assert (maps["pos_weight"] > 0).sum() == maps["inside"].sum()


def test_strong_positives_and_split_levels():
    weights = torch.tensor([[0.2, 0.5, 0.0, 0.3], [0.0, 0.0, 0.0, 0.0]])
    assert strong_positives(weights, 0.5).tolist() == [[False, True, False, False], [False] * 4]
    assert strong_positives(weights, 0.6)[0].tolist() == [False, True, False, True]
    assert strong_positives(weights, 1.0)[0].tolist() == [True, True, False, True]
    with pytest.raises(ValueError):
        strong_positives(weights, 0.0)

    values = torch.arange(2 * 8).reshape(2, 8)
    p3, p4 = split_levels(values, [(2, 3), (1, 2)])
    assert p3.shape == (2, 2, 3) and p4.shape == (2, 1, 2)
    assert p3[1, 1].tolist() == [11, 12, 13] and p4[0, 0].tolist() == [6, 7]
    with pytest.raises(ValueError):
        split_levels(values, [(2, 3)])


def test_record_selection_and_output_paths(tmp_path):
    records = [{"file_name": "/data/train/000001.jpg"}, {"file_name": "/data/train/000002.jpg"}]
    select = visualize_assignment.select_records
    assert select(records, [1, 0]) == [1, 0]
    assert select(records, [0], ["000002.jpg", "train/000001.jpg"]) == [1, 0]
    for indices, images in (([2], None), ([0], ["000003.jpg"])):
        with pytest.raises(SystemExit):
            select(records, indices, images)

    assert demo.output_path(str(tmp_path / "a.png"), "x/in.jpg", 1) == str(tmp_path / "a.png")
    assert demo.output_path(str(tmp_path / "pics"), "x/in.jpg", 2) == str(
        tmp_path / "pics" / "in.jpg"
    )
    with pytest.raises(SystemExit):
        demo.output_path(str(tmp_path / "a.png"), "x/in.jpg", 2)
