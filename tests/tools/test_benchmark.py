"""``benchmarks`` (tools/benchmarks/, behind tools/benchmark.py): the speed section's detectors
share backbone and input; its table and the statistics are right on hand-made numbers."""

import torch
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.utils.env import seed_all_rng
from helpers import printed_numbers, table_line

from benchmarks import detectors, report, speed
from dual_weighting import DWFCOS


def test_speed_detectors_share_backbone_and_input():
    models = speed.build_speed_models(detectors.SMALL_CONFIG, [], ["fcos", "dw"], "cpu")
    fcos, dw = models["fcos"][1], models["dw"][1]
    assert type(fcos) is FCOS and type(dw) is DWFCOS
    assert type(fcos.backbone) is type(dw.backbone)
    a, b = fcos.backbone.state_dict(), dw.backbone.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fcos.head_in_features == dw.head_in_features == ["p3", "p4", "p5", "p6", "p7"]
    assert torch.equal(fcos.pixel_mean, dw.pixel_mean)
    assert torch.equal(fcos.pixel_std, dw.pixel_std)
    # Same towers: two 3x3 convs of 128 channels with GroupNorm(32) each.
    fcos_convs = [m for m in fcos.head.cls_subnet if isinstance(m, torch.nn.Conv2d)]
    fcos_norms = [m for m in fcos.head.cls_subnet if isinstance(m, torch.nn.GroupNorm)]
    assert [c.out_channels for c in fcos_convs] == [c.out_channels for c in dw.head.cls_tower]
    assert [n.num_groups for n in fcos_norms] == [c.norm.num_groups for c in dw.head.cls_tower]
    # detectron2's own FCOS defaults are kept.
    assert fcos.test_score_thresh == 0.2 and fcos.center_sampling_radius == 1.5


def test_filtering_after_nms_equals_a_higher_threshold():
    cfg = detectors.make_cfg(detectors.SMALL_CONFIG, "dw")
    seed_all_rng(0)
    model = detectors.build_detector(cfg).eval()
    image = [{"image": torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)}]
    with torch.no_grad():
        model.test_score_thresh = 0.0
        low = model(image)[0]["instances"]
        high_thresh = float(low.scores.median())
        model.test_score_thresh = high_thresh
        high = model(image)[0]["instances"]
    filtered = low[low.scores > high_thresh]
    assert 0 < len(high) < len(low)
    assert torch.equal(filtered.scores, high.scores)
    assert torch.equal(filtered.pred_boxes.tensor, high.pred_boxes.tensor)


def test_statistics_and_speed_table_on_hand_made_numbers():
    assert report.mean_std([10.0, 20.0, 30.0]) == (20.0, 10.0, 10.0, 30.0)
    assert report.mean_std([float("nan"), 4.0]) == (4.0, 0.0, 4.0, 4.0)
    speed_results = {
        "fcos": {"train_s": [1.0, 2.0, 4.0], "infer_s": [0.1] * 3, "train_mib": [90, 100]},
        "dw": {"train_s": [1.1, 2.4, 4.0], "infer_s": [0.1, 0.2, 0.1], "train_mib": [None] * 3},
    }
    table = speed.format_speed(speed_results, "title")
    # Median train s/it and inference ms, largest memory growth, each with its ratio to FCOS:
    # the median of same-round ratios (DW train: 1.1, 1.2, 1.0, not 2.4 / 2.0); DW's memory is
    # unmeasured, so it has neither value nor ratio.
    assert printed_numbers(table_line(table, "FCOS", "(d2)")) == [2.0, 1.0, 100, 1.0, 100, 1.0]
    assert printed_numbers(table_line(table, "DW")) == [2.4, 1.1, 100, 1.0]
