"""Every yaml in configs/ loads, matches the published table and builds its model at full size."""

import pytest
from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer
from detectron2.modeling import build_model
from helpers import CONFIGS, YAMLS, load_cfg

from dual_weighting import DWFCOS, add_dw_config
from dual_weighting.layers.deform_conv import ModulatedDeformConv

# The release counts epochs: 1x = 12 epochs with lr steps after epochs 8 and 11, 2x = 24 with
# steps after 16 and 22. COCO train2017 has 117,266 images after the empty-image filter, so an
# epoch at 16 images a batch is 7,330 iterations (117,266 / 16, rounded up).
ITERS_PER_EPOCH = 7330
SCHEDULES = {"1x": (12, (8, 11)), "2x": (24, (16, 22))}
# The spec's table: depth, DCN, multi-scale, refine, schedule.
PUBLISHED = {
    "dw_R_50_FPN_1x.yaml": (50, False, False, False, "1x"),
    "dw_R_50_FPN_refine_1x.yaml": (50, False, False, True, "1x"),
    "dw_R_50_FPN_refine_ms_2x.yaml": (50, False, True, True, "2x"),
    "dw_R_50_FPN_DCN_refine_ms_2x.yaml": (50, True, True, True, "2x"),
    "dw_R_101_FPN_ms_2x.yaml": (101, False, True, False, "2x"),
    # The spec's R-101 row, the release's dw_r101_fpn_1x_coco (no published model or number).
    "dw_R_101_FPN_refine_1x.yaml": (101, False, False, True, "1x"),
}


def test_every_published_model_has_a_config():
    assert set(PUBLISHED) <= {p.name for p in YAMLS}
    assert ITERS_PER_EPOCH == -(-117266 // 16)


def test_1x_and_2x_schedules_are_the_releases_epochs_in_iterations():
    # Written out: 1x = 87,960 iterations, steps 58,640 / 80,630; 2x = 175,920, 117,280 / 161,260.
    one_x = load_cfg(CONFIGS / "dw_R_50_FPN_1x.yaml").SOLVER
    assert (one_x.MAX_ITER, tuple(one_x.STEPS)) == (87960, (58640, 80630))
    two_x = load_cfg(CONFIGS / "dw_R_50_FPN_refine_ms_2x.yaml").SOLVER
    assert (two_x.MAX_ITER, tuple(two_x.STEPS)) == (175920, (117280, 161260))


def test_reference_world_size_rescales_the_schedule():
    # detectron2's REFERENCE_WORLD_SIZE: 8 GPUs of 2 images; on 4 GPUs it halves the batch and
    # the lr and doubles the iterations, keeping the epoch boundaries.
    cfg = load_cfg(CONFIGS / "dw_R_50_FPN_1x.yaml")
    cfg.SOLVER.REFERENCE_WORLD_SIZE = 8
    scaled = DefaultTrainer.auto_scale_workers(cfg, 4).SOLVER
    assert (scaled.IMS_PER_BATCH, scaled.BASE_LR) == (8, 0.005)
    assert (scaled.MAX_ITER, tuple(scaled.STEPS)) == (2 * 87960, (2 * 58640, 2 * 80630))
    assert scaled.WARMUP_ITERS == 2000


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_config_matches_the_release(name):
    depth, dcn, multi_scale, refine, schedule = PUBLISHED[name]
    epochs, step_epochs = SCHEDULES[schedule]
    cfg = load_cfg(CONFIGS / name)
    assert cfg.MODEL.META_ARCHITECTURE == "DWFCOS"
    assert cfg.MODEL.RESNETS.DEPTH == depth
    assert any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE) == dcn
    assert cfg.MODEL.DW.DCN_ON_LAST_CONV == dcn
    assert cfg.MODEL.DW.BOX_REFINE == refine
    assert cfg.SOLVER.MAX_ITER == epochs * ITERS_PER_EPOCH
    assert tuple(cfg.SOLVER.STEPS) == tuple(e * ITERS_PER_EPOCH for e in step_epochs)
    if multi_scale:
        assert cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING == "range"
        assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (480, 960)
    else:
        assert tuple(cfg.INPUT.MIN_SIZE_TRAIN) == (800,)
    assert (cfg.INPUT.MAX_SIZE_TRAIN, cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (
        1333,
        800,
        1333,
    )
    # The release's solver and pytorch-style ResNet.
    assert cfg.SOLVER.IMS_PER_BATCH == 16 and cfg.SOLVER.BASE_LR == 0.01
    assert cfg.SOLVER.MOMENTUM == 0.9 and cfg.SOLVER.WEIGHT_DECAY == 1e-4
    assert cfg.SOLVER.WEIGHT_DECAY_NORM == 0.0
    assert cfg.SOLVER.WARMUP_ITERS == 1000 and cfg.SOLVER.WARMUP_FACTOR == 0.001
    assert cfg.SOLVER.CLIP_GRADIENTS.ENABLED is False
    assert cfg.MODEL.RESNETS.STRIDE_IN_1X1 is False and cfg.INPUT.FORMAT == "RGB"
    assert list(cfg.MODEL.PIXEL_MEAN) == [123.675, 116.28, 103.53]
    assert list(cfg.MODEL.PIXEL_STD) == [58.395, 57.12, 57.375]
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 2
    # The release's BN (statistics frozen, affine trained), resize and post-processing.
    assert cfg.MODEL.RESNETS.NORM == "FrozenStatsBN"
    assert cfg.INPUT.RELEASE_RESIZE_TEST is True and cfg.INPUT.RELEASE_RESIZE_TRAIN is True
    assert cfg.MODEL.DW.RELEASE_POSTPROCESS_TEST is True
    assert cfg.DATASETS.TEST == ("coco_2017_val",)


def test_dw_defaults_equal_the_release():
    cfg = get_cfg()
    add_dw_config(cfg)
    dw = cfg.MODEL.DW
    assert (dw.NUM_CONVS, dw.NORM, dw.PRIOR_PROB, dw.BOX_BIAS_INIT) == (4, "GN", 0.02, 4.0)
    assert (dw.CENTER_PRIOR_MU, dw.CENTER_PRIOR_SIGMA, dw.LOC_SCORE_SCALE) == (0.0, 1.11, 5.0)
    assert (dw.POS_WEIGHT_NUM_SCALE, dw.POS_WEIGHT_DEN_SCALE) == (5.0, 3.0)
    assert (dw.POS_CLS_LOSS_WEIGHT, dw.POS_LOC_LOSS_WEIGHT, dw.NEG_IOU_THRESH) == (0.25, 0.25, 0.5)
    assert dw.BOUNDED_NEG_LOSS is False  # the release divides by sum(1 - w_neg) alone
    assert (dw.SCORE_THRESH_TEST, dw.TOPK_CANDIDATES_TEST, dw.NMS_THRESH_TEST) == (0.05, 1000, 0.6)
    assert cfg.TEST.DETECTIONS_PER_IMAGE == 100
    assert (cfg.TEST.IMS_PER_BATCH, cfg.TEST.COCO_EVAL) == (1, "auto")


def test_typo_and_wrong_type_fail_naming_the_key(tmp_path):
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        f'_BASE_: "{CONFIGS / "dw_R_50_FPN_1x.yaml"}"\nMODEL:\n  DW:\n    BOX_REFIN: True\n'
    )
    with pytest.raises(KeyError, match="MODEL.DW.BOX_REFIN"):
        load_cfg(typo)
    cfg = load_cfg(CONFIGS / "dw_R_50_FPN_1x.yaml")
    # yacs reports an unknown key given on the command line with an AssertionError.
    with pytest.raises(AssertionError, match="MODEL.DW.BOX_REFIN"):
        cfg.merge_from_list(["MODEL.DW.BOX_REFIN", "True"])
    with pytest.raises(ValueError, match="MODEL.DW.NUM_CLASSES"):
        cfg.merge_from_list(["MODEL.DW.NUM_CLASSES", "'eighty'"])


def test_unknown_in_feature_is_named():
    cfg = load_cfg(CONFIGS / "dw_R_50_FPN_1x.yaml")
    cfg.MODEL.DW.IN_FEATURES = ["p3", "p8"]
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    with pytest.raises(ValueError, match="p8"):
        build_model(cfg)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_config_builds_its_model_at_full_size(path):
    # Every config's model, thinned, trains a step and infers in test_model_e2e.py.
    cfg = load_cfg(path)
    model = build_model(cfg)
    assert isinstance(model, DWFCOS)
    has_dcn = any(isinstance(m, ModulatedDeformConv) for m in model.modules())
    assert has_dcn == any(cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE)
    assert model.head.box_refine == cfg.MODEL.DW.BOX_REFINE
    assert model.num_classes == model.head.cls_logits.out_channels == cfg.MODEL.DW.NUM_CLASSES
