"""DWFCOS without yacs: inference rules on hand-made predictions, checkpoints. Its training steps
are in test_model_e2e.py (every config)."""

import math

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone
from detectron2.structures import Boxes
from helpers import NMS_TIE
from torch import nn

from dual_weighting import DWFCOS, DWHead
from dual_weighting.layers import batched_nms_float32

C = 3
# Image 32 x 48: level "p3" (stride 8) is 4 x 6 cells, "p4" (stride 16) is 2 x 3.
SHAPE = {"p3": (4, 6), "p4": (2, 3)}


class TinyBackbone(Backbone):
    """Two levels (strides 8 and 16) from average-pooled pixels and a 1x1 conv."""

    def __init__(self, channels=32):
        super().__init__()
        self.proj = nn.Conv2d(3, channels, 1)
        self.channels = channels

    def forward(self, x):
        return {
            "p3": self.proj(nn.functional.avg_pool2d(x, 8)),
            "p4": self.proj(nn.functional.avg_pool2d(x, 16)),
        }

    def output_shape(self):
        return {
            "p3": ShapeSpec(channels=self.channels, stride=8),
            "p4": ShapeSpec(channels=self.channels, stride=16),
        }

    @property
    def size_divisibility(self):
        return 16


class FixedHead(nn.Module):
    """Returns fixed per-level predictions, whatever the features."""

    def __init__(self, logits, ltrb, centerness):
        super().__init__()
        self.predictions = (logits, ltrb, centerness)

    def forward(self, features):
        return self.predictions


def make_model(head, **kwargs):
    return DWFCOS(
        backbone=TinyBackbone(),
        head=head,
        head_in_features=["p3", "p4"],
        num_classes=C,
        pixel_mean=[0.0, 0.0, 0.0],
        pixel_std=[1.0, 1.0, 1.0],
        **kwargs,
    ).eval()


def hand_made_predictions():
    """Logits -20 (score ~0) and centerness +20 (factor ~1) except at five points:

    A p3 (1,1), centre (12,12): class 0, logit 2  -> score sigmoid(2); box (4, 4, 24, 20)
    B p3 (1,2), centre (20,12): class 0, logit 1  -> box (6, 4, 26, 20): IoU with A > 0.6, NMS
    C p3 (2,2), centre (20,20): class 1, logit 1  -> same box as B, other class: kept
    D p3 (3,5), centre (44,28): class 2, logit -3.5 -> score 0.029 < 0.05: dropped
    E p4 (0,2), centre (40, 8): class 2, logit 0  -> box (30, 0, 60, 18) clipped to x2 = 48
    """
    logits = {k: torch.full((1, C, h, w), -20.0) for k, (h, w) in SHAPE.items()}
    ltrb = {k: torch.ones(1, 4, h, w) for k, (h, w) in SHAPE.items()}
    ctr = {k: torch.full((1, 1, h, w), 20.0) for k, (h, w) in SHAPE.items()}
    for level, (i, j), cls, logit, (cx, cy), box in [
        ("p3", (1, 1), 0, 2.0, (12, 12), (4, 4, 24, 20)),
        ("p3", (1, 2), 0, 1.0, (20, 12), (6, 4, 26, 20)),
        ("p3", (2, 2), 1, 1.0, (20, 20), (6, 4, 26, 20)),
        ("p3", (3, 5), 2, -3.5, (44, 28), (40, 24, 48, 32)),
        ("p4", (0, 2), 2, 0.0, (40, 8), (30, 0, 60, 18)),
    ]:
        logits[level][0, cls, i, j] = logit
        x1, y1, x2, y2 = box
        ltrb[level][0, :, i, j] = torch.tensor(
            [cx - x1, cy - y1, x2 - cx, y2 - cy], dtype=torch.float
        )
    levels = ["p3", "p4"]
    return [logits[k] for k in levels], [ltrb[k] for k in levels], [ctr[k] for k in levels]


def run_inference(model, height=32, width=48):
    inputs = [{"image": torch.zeros(3, 32, 48), "height": height, "width": width}]
    with torch.no_grad():
        return model(inputs)[0]["instances"]


def sig(x):
    return 1 / (1 + math.exp(-x))


def test_threshold_nms_clipping_and_joint_score():
    inst = run_inference(make_model(FixedHead(*hand_made_predictions())))
    assert inst.pred_classes.tolist() == [0, 1, 2]
    expected_scores = [sig(2.0) * sig(20.0), sig(1.0) * sig(20.0), sig(0.0) * sig(20.0)]
    torch.testing.assert_close(inst.scores, torch.tensor(expected_scores))
    torch.testing.assert_close(
        inst.pred_boxes.tensor,
        torch.tensor([[4.0, 4, 24, 20], [6, 4, 26, 20], [30, 0, 48, 18]]),
    )


def test_boxes_rescaled_to_the_original_size():
    inst = run_inference(make_model(FixedHead(*hand_made_predictions())), height=64, width=96)
    assert inst.image_size == (64, 96)
    torch.testing.assert_close(
        inst.pred_boxes.tensor,
        2 * torch.tensor([[4.0, 4, 24, 20], [6, 4, 26, 20], [30, 0, 48, 18]]),
    )


def test_nms_keeps_an_exact_float32_tie_as_the_release():
    """The boxes of helpers.NMS_TIE, of one class: IoU 0.6 exactly, a tie the release's float32
    rule keeps and torchvision's NMS drops (test_nms.py); the detector keeps both."""
    model = make_model(FixedHead(*hand_made_predictions()))
    points = (NMS_TIE[:, :2] + NMS_TIE[:, 2:]) / 2
    ltrb = torch.cat([points - NMS_TIE[:, :2], NMS_TIE[:, 2:] - points], dim=1)
    scores = torch.zeros(2, C)
    scores[:, 0] = torch.tensor([0.9, 0.5])
    # Anchors of side 2 around the points: detectron2's decoding starts from their centres.
    anchors = Boxes(torch.cat([points - 1, points + 1], dim=1))
    inst = model.inference_single_image([anchors], [scores], [ltrb], (320, 320))
    torch.testing.assert_close(inst.pred_boxes.tensor, NMS_TIE)


def test_topk_per_level_and_detections_per_image():
    head = FixedHead(*hand_made_predictions())
    inst = run_inference(make_model(head, test_topk_candidates=1))
    # Per level only the best: A on p3, E on p4.
    assert inst.pred_classes.tolist() == [0, 2]
    inst = run_inference(make_model(head, max_detections_per_image=2))
    assert inst.pred_classes.tolist() == [0, 1]
    inst = run_inference(make_model(head, test_score_thresh=0.6))
    assert inst.pred_classes.tolist() == [0, 1]


def test_anchor_points_have_offset_half_a_stride():
    model = make_model(FixedHead(*hand_made_predictions()))
    feats = [torch.zeros(1, 1, 4, 6), torch.zeros(1, 1, 2, 3)]
    points, strides = model.anchor_points(feats)
    assert points.shape == (24 + 6, 2)
    torch.testing.assert_close(points[0], torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(points[7], torch.tensor([12.0, 12.0]))  # p3 cell (1, 1)
    torch.testing.assert_close(points[24 + 2], torch.tensor([40.0, 8.0]))  # p4 cell (0, 2)
    assert strides[:24].eq(8).all() and strides[24:].eq(16).all()


def make_trainable_model(test_score_thresh=0.05, seed=0, **head_kwargs):
    torch.manual_seed(seed)
    backbone = TinyBackbone()
    shapes = backbone.output_shape()
    head = DWHead(input_shape=[shapes["p3"], shapes["p4"]], num_classes=C, **head_kwargs)
    return DWFCOS(
        backbone=backbone,
        head=head,
        head_in_features=["p3", "p4"],
        num_classes=C,
        pixel_mean=[100.0, 100.0, 100.0],
        pixel_std=[50.0, 50.0, 50.0],
        test_score_thresh=test_score_thresh,
    )


def test_a_saved_and_restored_model_gives_the_same_detections(tmp_path):
    # Untrained scores are about 0.02 * 0.5: keep them all to compare many boxes.
    model = make_trainable_model(test_score_thresh=0.0, box_refine=True).eval()
    with torch.no_grad():
        model.head.scales[0].fill_(1.3)
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model")
    restored = make_trainable_model(test_score_thresh=0.0, seed=1, box_refine=True).eval()
    inputs = [{"image": torch.rand(3, 64, 80) * 255}]
    with torch.no_grad():
        a = model(inputs)[0]["instances"]
        before = restored(inputs)[0]["instances"]
    assert len(a) > 0 and not torch.equal(a.scores, before.scores)
    DetectionCheckpointer(restored).load(str(tmp_path / "model.pth"))
    with torch.no_grad():
        b = restored(inputs)[0]["instances"]
    torch.testing.assert_close(a.pred_boxes.tensor, b.pred_boxes.tensor)
    torch.testing.assert_close(a.scores, b.scores)


def test_release_postprocess_rescales_first_and_keeps_what_detectron2_drops():
    """Hand-made predictions of a 32 x 48 input from a 64 x 96 image, plus F: p4 (1, 2), centre
    (40, 24), class 1, box (40, 20, 40, 30), of zero width."""
    logits, ltrb, ctr = hand_made_predictions()
    logits[1][0, 1, 1, 2] = 0.0
    ltrb[1][0, :, 1, 2] = torch.tensor([0.0, 4, 0, 6])
    detectron2_way = run_inference(make_model(FixedHead(logits, ltrb, ctr)), 64, 96)
    release_way = run_inference(
        make_model(FixedHead(logits, ltrb, ctr), test_release_postprocess=True), 64, 96
    )
    kept = 2 * torch.tensor([[4.0, 4, 24, 20], [6, 4, 26, 20], [30, 0, 48, 18]])
    torch.testing.assert_close(detectron2_way.pred_boxes.tensor, kept)
    assert release_way.image_size == (64, 96)
    # Scores sig(2), sig(1), sig(0), sig(0): F, an empty box, stays (the release keeps it).
    torch.testing.assert_close(
        release_way.pred_boxes.tensor, torch.cat([kept, torch.tensor([[80.0, 40, 80, 60]])])
    )
    assert release_way.pred_classes.tolist() == [0, 1, 2, 1]


def test_release_postprocess_decides_nms_on_original_coordinates():
    """Per class, a box A and a box B inside it with IoU 0.6 up to float32 rounding (B's height
    0.6 of A's), at COCO's commonest resize (480 x 640 -> 800 x 1067): whether B survives the NMS
    hangs on rounding, so it must be decided on the boxes clipped to the resized image and
    divided by float32(new / old), as in the release; the frame must matter for some pairs, or
    this test could not fail."""
    model = make_model(FixedHead(*hand_made_predictions()), test_release_postprocess=True)
    resized, original = (800, 1067), (480, 640)
    w_scale, h_scale = np.float32(1067 / 640), np.float32(800 / 480)
    factors = torch.tensor([w_scale, h_scale, w_scale, h_scale])
    g = torch.Generator().manual_seed(0)
    frames_differ = 0
    for _ in range(20):
        num_classes = 50  # 100 candidates: the 100-detection cut keeps every survivor
        corner = torch.rand(num_classes, 2, generator=g) * torch.tensor([900.0, 600])
        size = torch.rand(num_classes, 2, generator=g) * 150 + 10
        a = torch.cat([corner, corner + size], dim=1)
        b = a.clone()
        b[:, 3] = b[:, 1] + 0.6 * size[:, 1]
        boxes = torch.cat([a, b])  # candidate i of class i % 80
        classes = torch.arange(2 * num_classes) % num_classes
        points = (boxes[:, :2] + boxes[:, 2:]) / 2
        ltrb = torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=1)
        candidate_scores = torch.cat(
            [torch.full((num_classes,), 0.9), torch.full((num_classes,), 0.5)]
        )
        scores = torch.zeros(2 * num_classes, num_classes)
        scores[torch.arange(2 * num_classes), classes] = candidate_scores
        # Anchors of side 2 around the points.
        anchors = Boxes(torch.cat([points - 1, points + 1], dim=1))
        inst = model.inference_single_image([anchors], [scores], [ltrb], resized, original)

        # Decoded from the anchors' centres as detectron2's linear transform does.
        centres = anchors.get_centers()
        decoded = torch.cat([centres - ltrb[:, :2], centres + ltrb[:, 2:]], dim=1)
        decoded[:, 0::2] = decoded[:, 0::2].clamp(0, 1067)
        decoded[:, 1::2] = decoded[:, 1::2].clamp(0, 800)
        in_original = decoded / factors
        keep = batched_nms_float32(in_original, candidate_scores, classes, 0.6)[:100]
        assert inst.image_size == original
        # Equal scores leave the order open: compare by (class, A before B).
        got = sorted(zip(inst.pred_classes.tolist(), (-inst.scores).tolist(),
                         inst.pred_boxes.tensor.tolist()))  # fmt: skip
        want = sorted(zip(classes[keep].tolist(), (-candidate_scores[keep]).tolist(),
                          in_original[keep].tolist()))  # fmt: skip
        assert got == want
        keep_resized = batched_nms_float32(decoded, candidate_scores, classes, 0.6)[:100]
        frames_differ += len(set(keep.tolist()) ^ set(keep_resized.tolist()))
    assert frames_differ > 0
