"""The knock-out of a short warm-up, small: while the lr climbs, DW's positive weights raise the
scores of a whole map at once, the release's negative loss, ``q^2 BCE(q, 0)`` over every entry
divided by ``sum(1 - w_neg)``, grows with the cube of the scores, and its step sends every score
to about 0 (docs/BENCHMARKS.md, the tree crowns with a 50-iteration warm-up). The bounded
negative loss (``MODEL.DW.BOUNDED_NEG_LOSS``) keeps that step ordinary."""

import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling.meta_arch.fcos import FCOSHead
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from helpers import TwoLevels

from dual_weighting import DWFCOS, DWCriterion, DWHead
from dual_weighting.modeling import DWLossFCOS


def bright_squares(seed: int):
    """Four 128 x 128 images of dim noise with six bright squares of 16-32 px, one class."""
    g = torch.Generator().manual_seed(seed)
    batch = []
    for _ in range(4):
        image = torch.rand(3, 128, 128, generator=g) * 60
        boxes = []
        for _ in range(6):
            w, h = torch.randint(16, 33, (2,), generator=g).tolist()
            x = torch.randint(0, 128 - w, (1,), generator=g).item()
            y = torch.randint(0, 128 - h, (1,), generator=g).item()
            image[:, y : y + h, x : x + w] = 120 + torch.rand(3, h, w, generator=g) * 100
            boxes.append([x, y, x + w, y + h])
        instances = Instances((128, 128))
        instances.gt_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32))
        instances.gt_classes = torch.zeros(6, dtype=torch.int64)
        batch.append({"image": image, "instances": instances})
    return batch


def small_detector(detector: str, init_seed: int, bounded_neg_loss: bool):
    """DWFCOS (the release's head) or DWLossFCOS (detectron2's), towers of two 32-channel
    convs with GroupNorm, one class."""
    torch.manual_seed(init_seed)
    shapes = [ShapeSpec(channels=32, stride=s) for s in (8, 16)]
    if detector == "DWFCOS":
        cls, head = DWFCOS, DWHead(input_shape=shapes, num_classes=1, num_convs=2)
    else:
        head = FCOSHead(input_shape=shapes, conv_dims=[32, 32], num_classes=1, norm="GN")
        cls = DWLossFCOS
    return cls(
        backbone=TwoLevels(32),
        head=head,
        head_in_features=["p3", "p4"],
        num_classes=1,
        criterion=DWCriterion(bounded_neg_loss=bounded_neg_loss),
        pixel_mean=[100.0] * 3,
        pixel_std=[50.0] * 3,
    )


def lowest_mean_score(model, batch, steps=30, lr=0.1, warmup=10):
    """SGD (momentum 0.9, linear warm-up from 0.001 x lr over ``warmup`` steps); the lowest mean
    joint score of the batch over the steps after its first peak, 0.0 if the run stopped."""
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    means = []
    with EventStorage() as storage:
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, 0.001 + 0.999 * step / warmup)
            try:
                losses = model(batch)
            except FloatingPointError:
                return 0.0
            with torch.no_grad():
                images = model.preprocess_image(batch)
                features = model.backbone(images.tensor)
                predictions = model.head([features[f] for f in model.head_in_features])
                scores = [
                    torch.sigmoid(c) * torch.sigmoid(o)
                    for c, o in zip(predictions[0], predictions[-1])
                ]
                means.append(torch.cat([s.flatten() for s in scores]).mean().item())
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            storage.step()
    return min(means[means.index(max(means)) :])


def test_the_release_knocks_the_scores_out_where_the_bounded_negative_loss_does_not():
    # At lr 0.1 the runs of the release that fall fall to 1e-7 or stop (training collapsed or
    # diverged); the bounded ones stay above 4e-4 (the scores start at about 5e-3 and 1e-2).
    # Chaotic, like the tree crowns: which run falls changes with the floating-point kernels, so
    # the test counts over 2 detectors x 2 initialisations x 2 batches.
    knocked = {False: [], True: []}
    for detector in ("DWFCOS", "DWLossFCOS"):
        for init_seed in (1, 2):
            for batch_seed in (1, 2):
                batch = bright_squares(batch_seed)
                for bounded in (False, True):
                    model = small_detector(detector, init_seed, bounded)
                    lowest = lowest_mean_score(model, batch)
                    if lowest < 1e-5:
                        knocked[bounded].append((detector, init_seed, batch_seed, lowest))
    assert len(knocked[False]) >= 3, knocked
    assert knocked[True] == [], knocked
