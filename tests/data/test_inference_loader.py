"""The test loader that batches images of one size (dual_weighting.data.inference_loader)."""

import logging
from unittest import mock

import pytest
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data.samplers import InferenceSampler

from dual_weighting import add_dw_config
from dual_weighting.data import SizeOrderedInferenceSampler, build_dw_test_loader
from dual_weighting.engine import DWTrainer

# COCO's commonest shapes: landscape 480x640 and 427x640, portrait 640x480.
SIZES = [(480, 640), (640, 480), (480, 640), (427, 640), (640, 480), (480, 640)]


def dicts(sizes=SIZES):
    return [
        {"file_name": f"{i}.jpg", "image_id": i, "height": h, "width": w}
        for i, (h, w) in enumerate(sizes)
    ]


def test_order_by_aspect_ratio_then_height_then_index():
    # Ratios: 427/640 = 0.667 (3), 480/640 = 0.75 (0, 2, 5), 640/480 = 1.33 (1, 4).
    assert list(SizeOrderedInferenceSampler(SIZES)) == [3, 0, 2, 5, 1, 4]
    assert len(SizeOrderedInferenceSampler(SIZES)) == 6
    # One aspect ratio, two sizes: the smaller first.
    assert list(SizeOrderedInferenceSampler([(600, 800), (300, 400), (600, 800)])) == [1, 0, 2]


@pytest.mark.parametrize("world_size", [2, 4])
def test_workers_share_the_order_contiguously_and_see_every_image_once(world_size):
    shares = []
    for rank in range(world_size):
        with (
            mock.patch("detectron2.utils.comm.get_world_size", return_value=world_size),
            mock.patch("detectron2.utils.comm.get_rank", return_value=rank),
        ):
            shares.append(list(SizeOrderedInferenceSampler(SIZES)))
            # The same share sizes as detectron2's InferenceSampler.
            assert len(shares[-1]) == len(InferenceSampler(len(SIZES)))
    assert [i for share in shares for i in share] == [3, 0, 2, 5, 1, 4]


def test_a_dict_without_its_size_is_named():
    bad = dicts()
    del bad[4]["height"]
    with pytest.raises(ValueError, match=r"Dataset dict 4 \(4.jpg\) has no height and width"):
        SizeOrderedInferenceSampler.from_dataset_dicts(bad)


def batches(loader):
    return [[(d["height"], d["width"]) for d in batch] for batch in loader]


def test_batches_hold_one_size_where_the_data_allows(caplog):
    loader = build_dw_test_loader(dicts(), mapper=lambda d: d, batch_size=2)
    assert batches(loader) == [
        [(427, 640), (480, 640)],
        [(480, 640), (480, 640)],
        [(640, 480), (640, 480)],
    ]
    # One a batch: detectron2's order.
    single = build_dw_test_loader(dicts(), mapper=lambda d: d, batch_size=1)
    assert [b[0] for b in batches(single)] == SIZES
    # Without sizes: dataset order, and a warning that says why.
    bad = dicts()
    del bad[0]["width"]
    with caplog.at_level(logging.WARNING):
        loader = build_dw_test_loader(bad, mapper=lambda d: d, batch_size=3)
        assert [d["image_id"] for b in loader for d in b] == list(range(6))
    assert "dataset order" in caplog.text and "Dataset dict 0 (0.jpg)" in caplog.text


def test_trainer_test_loader_orders_when_batching():
    name = "dw_test_size_ordered"
    DatasetCatalog.register(name, dicts)
    try:
        cfg = get_cfg()
        add_dw_config(cfg)
        cfg.merge_from_list(["DATALOADER.NUM_WORKERS", "0", "TEST.IMS_PER_BATCH", "2"])
        loader = DWTrainer.build_test_loader(cfg, name)
        assert isinstance(loader.sampler, SizeOrderedInferenceSampler)
        assert list(loader.sampler) == [3, 0, 2, 5, 1, 4] and loader.batch_size == 2
        cfg.TEST.IMS_PER_BATCH = 1
        loader = DWTrainer.build_test_loader(cfg, name)
        assert type(loader.sampler) is InferenceSampler and loader.batch_size == 1
    finally:
        DatasetCatalog.remove(name)
