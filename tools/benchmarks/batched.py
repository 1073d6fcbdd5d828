"""The batched section: inference throughput at several test batch sizes, and how far the
detections of a batch differ from those of one image at a time.

Images of one batch are padded to the batch's largest size (``ImageList``). Unmasked
(``MODEL.DW.MASK_PADDING_TEST False``, detectron2's behaviour) that padding is seen by every
convolution's border and by the head's GroupNorm statistics, and the head predicts in it, so an
image padded more in a batch than alone is not computed as alone; masked (the default,
:class:`~dual_weighting.layers.BatchPadding`) it is, to rounding. The generated validation split
has one image size (256x320, no padding at all); its "mixed" variant resizes each image to a
shorter side of 160, 208 or 256 (by image id), so that batches mix sizes as COCO's do.
"""

import contextlib
import io
import statistics
from pathlib import Path

import torch
from detectron2.data import DatasetCatalog, DatasetMapper, build_detection_test_loader
from detectron2.data import transforms as T
from detectron2.modeling import build_model
from detectron2.structures import pairwise_iou

from dual_weighting.checkpoint import DWCheckpointer
from dual_weighting.data import (
    SizeOrderedInferenceSampler,
    default_synthetic_root,
    ensure_synthetic,
)
from dual_weighting.evaluation import DWCOCOEvaluator

from .detectors import SMALL_CONFIG, make_cfg
from .plots import bar_chart
from .report import format_table
from .speed import Device, paired_ratio

# Shorter sides of the "mixed" variant (the demo tests at 256, longer side at most 320).
MIXED_SHORT_SIDES = (160, 208, 256)
# Detections of two runs are the same detection if of one class and overlapping this much.
MATCH_IOU = 0.5


class MixedSizeMapper:
    """detectron2's test ``DatasetMapper`` resizing the image of id ``k`` to the shorter side
    ``short_sides[k % len(short_sides)]`` (the longer side capped at ``INPUT.MAX_SIZE_TEST``),
    so consecutive images differ in size."""

    def __init__(self, cfg, short_sides=MIXED_SHORT_SIDES):
        self.short_sides = short_sides
        self.max_size = cfg.INPUT.MAX_SIZE_TEST
        self.mappers = [
            DatasetMapper(
                cfg, is_train=False, augmentations=[T.ResizeShortestEdge(s, self.max_size)]
            )
            for s in short_sides
        ]

    def __call__(self, dataset_dict):
        return self.mappers[dataset_dict["image_id"] % len(self.mappers)](dataset_dict)

    def output_size(self, dataset_dict):
        """(height, width) of the image this mapper makes of ``dataset_dict``."""
        short = self.short_sides[dataset_dict["image_id"] % len(self.short_sides)]
        return T.ResizeShortestEdge.get_output_shape(
            dataset_dict["height"], dataset_dict["width"], short, self.max_size
        )


def load_model(cfg, weights):
    """The model of ``cfg`` with ``weights`` loaded strictly (every weight present), in eval
    mode."""
    model = build_model(cfg)
    DWCheckpointer(model, strict=True).load(str(weights))
    return model.eval()


def predict(model, cfg, dataset_name, batch_size, mapper=None, ordered=False):
    """Run ``model`` over ``dataset_name`` through detectron2's test loader at ``batch_size``,
    the images in dataset order or, if ``ordered``, by the size ``mapper`` gives them
    (:class:`SizeOrderedInferenceSampler`).

    Returns:
        (dict, float): per image id, the loader's input dict (without the image) and the
        output ``Instances`` on the CPU; seconds of the whole loop (loader and model).
    """
    sampler = None
    if ordered:
        sizes = [
            mapper.output_size(d) if mapper else (d["height"], d["width"])
            for d in DatasetCatalog.get(dataset_name)
        ]
        sampler = SizeOrderedInferenceSampler(sizes)
    loader = build_detection_test_loader(
        cfg, dataset_name, mapper=mapper, batch_size=batch_size, sampler=sampler
    )
    device, results = Device(cfg.MODEL.DEVICE), {}

    def loop():
        with torch.no_grad():
            for inputs in loader:
                for x, y in zip(inputs, model(inputs)):
                    meta = {k: v for k, v in x.items() if k != "image"}
                    results[x["image_id"]] = (meta, y["instances"].to("cpu"))

    seconds = device.time(loop)
    return results, seconds


def coco_ap(dataset_name, predictions):
    """COCO box AP table (%) of ``predictions`` (as :func:`predict` returns) with
    :class:`DWCOCOEvaluator`."""
    evaluator = DWCOCOEvaluator(dataset_name, tasks=("bbox",), output_dir=None)
    evaluator.reset()
    for meta, instances in predictions.values():
        evaluator.process([meta], [{"instances": instances}])
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' progress lines
        return evaluator.evaluate()["bbox"]


def _best_matches(a, b):
    """For each detection of ``a``: the index of the same-class detection of ``b`` overlapping
    it most, and that IoU (0 if none)."""
    iou = pairwise_iou(a.pred_boxes, b.pred_boxes)  # (len(a), len(b))
    iou[a.pred_classes[:, None] != b.pred_classes[None, :]] = 0
    if iou.shape[1] == 0:
        return torch.zeros(len(a), dtype=torch.long), torch.zeros(len(a))
    best, index = iou.max(dim=1)
    return index, best


def compare_detections(reference, other):
    """How far ``other``'s detections are from ``reference``'s (both as :func:`predict`
    returns, same images).

    Returns:
        dict: ``dets_per_image`` (of ``other``), ``images_with_other_count`` (images whose number
        of detections differs), ``unmatched`` (detections of either run without a same-class
        detection of the other at IoU >= :data:`MATCH_IOU`), and over the matched pairs the
        largest ``score_diff``, the ``mean_score_diff`` and the largest ``box_diff`` (pixels,
        any coordinate).
    """
    counts, differing, unmatched = [], 0, 0
    score_diff = box_diff = score_sum = 0.0
    num_matched = 0
    for image_id, (_, ref) in reference.items():
        det = other[image_id][1]
        counts.append(len(det))
        differing += len(det) != len(ref)
        for a, b in ((ref, det), (det, ref)):
            unmatched += int((_best_matches(a, b)[1] < MATCH_IOU).sum())
        index, iou = _best_matches(ref, det)
        matched = iou >= MATCH_IOU
        if matched.any():
            pairs = index[matched]
            scores = (ref.scores[matched] - det.scores[pairs]).abs()
            score_diff = max(score_diff, float(scores.max()))
            score_sum += float(scores.sum())
            num_matched += len(scores)
            boxes = ref.pred_boxes.tensor[matched] - det.pred_boxes.tensor[pairs]
            box_diff = max(box_diff, float(boxes.abs().max()))
    return {
        "dets_per_image": statistics.fmean(counts),
        "images_with_other_count": differing,
        "unmatched": unmatched,
        "score_diff": score_diff,
        "mean_score_diff": score_sum / max(num_matched, 1),
        "box_diff": box_diff,
    }


def throughput(model, cases, device, warmup, repeats):
    """Images per second of ``model`` in each case, the cases interleaved round by round (so
    load from other processes hits them alike).

    Args:
        cases: {key: (mapped inputs, batch size, test_mask_padding)}.

    Returns:
        {key: [images/s of every timed round]}
    """
    dev = Device(device)
    mask_before = model.test_mask_padding

    def run(inputs, batch_size):
        with torch.no_grad():
            for i in range(0, len(inputs), batch_size):
                model(inputs[i : i + batch_size])

    rates = {key: [] for key in cases}
    try:
        for r in range(warmup + repeats):
            for key, (inputs, batch_size, mask) in cases.items():
                model.test_mask_padding = mask
                seconds = dev.time(lambda: run(inputs, batch_size))  # noqa: B023 (called at once)
                if r >= warmup:
                    rates[key].append(len(inputs) / seconds)
    finally:
        model.test_mask_padding = mask_before
    return rates


def format_exactness(rows_by_variant, batch_sizes):
    """A table per dataset variant: AP, the difference of detections to batch 1, and the seconds
    of the whole pass (loader and model, one pass, not interleaved)."""
    parts = []
    for variant, runs in rows_by_variant.items():
        ref_ap = runs[batch_sizes[0]]["ap"]["AP"]
        rows = []
        for b in batch_sizes:
            r = runs[b]
            c = r["comparison"]
            rows.append(
                [
                    str(b),
                    f"{r['ap']['AP']:.2f}",
                    f"{r['ap']['AP'] - ref_ap:+.2f}",
                    f"{r['ap']['AP50']:.2f}",
                    f"{c['dets_per_image']:.2f}",
                    str(c["images_with_other_count"]),
                    str(c["unmatched"]),
                    f"{c['score_diff']:.1e}",
                    f"{c['mean_score_diff']:.1e}",
                    f"{c['box_diff']:.1e}",
                    f"{r['seconds']:.1f}",
                ]
            )
        header = [
            "batch", "AP", "AP diff", "AP50", "dets/img", "images w/ other count", "unmatched",
            "max score diff", "mean score diff", "max box diff px", "pass s",
        ]  # fmt: skip
        parts.append(f"{variant}:\n{format_table(header, rows)}")
    return "\n\n".join(parts)


def format_throughput(rates):
    """Median images/s per case and its ratio to the first case of the same images (the median of
    same-round ratios, as the speed section's).

    Args:
        rates: {(images, padding, batch size): [images/s]}, as :func:`throughput` returns.
    """
    first = {}
    rows = []
    for (images, padding, batch), r in rates.items():
        base = first.setdefault(images, r)
        rows.append(
            [
                images,
                padding,
                str(batch),
                f"{statistics.median(r):.1f}",
                f"{paired_ratio(r, base):.2f}x",
            ]
        )
    return format_table(["images", "padding", "batch", "images/s", "ratio"], rows)


def run_batched(args, out):
    """Evaluate ``args.weights`` (the demo model) at every batch of ``args.batch_sizes`` on the
    generated validation split as it is and with mixed sizes, time model calls at each batch
    size, print the tables, set ``out["batched"]``."""
    if not args.weights.is_file():
        raise FileNotFoundError(
            f"No trained model at {args.weights}: run `make demo` (it writes "
            "output/demo/model_final.pth) or pass --weights"
        )
    ensure_synthetic(default_synthetic_root())
    cfg = make_cfg(SMALL_CONFIG, "dw", device=args.device)
    model = load_model(cfg, args.weights)
    dataset = cfg.DATASETS.TEST[0]
    dicts = DatasetCatalog.get(dataset)[: args.batched_images]
    # Throughput first: its warm-up also warms the model up for the passes below.
    mixed_mapper = MixedSizeMapper(cfg)
    mixed = [mixed_mapper(d) for d in dicts]
    order = SizeOrderedInferenceSampler([mixed_mapper.output_size(d) for d in dicts])
    mapped = {
        "one size": [DatasetMapper(cfg, is_train=False)(d) for d in dicts],
        "mixed sizes": mixed,
        "mixed sizes, ordered": [mixed[i] for i in order],
    }
    cases = {}
    for images, padding, mask in (
        ("one size", "", True),
        ("mixed sizes", "masked", True),
        ("mixed sizes", "plain", False),
        ("mixed sizes, ordered", "masked", True),
    ):
        for b in args.batch_sizes:
            cases[(images, padding, b)] = (mapped[images], b, mask)
    print("  throughput ...", flush=True)
    rates = throughput(model, cases, args.device, args.warmup, args.repeats)
    exact = {}
    for variant, mapper, mask, ordered in (
        ("one size", None, True, False),
        ("mixed sizes, masked padding (MASK_PADDING_TEST, default)", mixed_mapper, True, False),
        ("mixed sizes, plain padding (MASK_PADDING_TEST False)", mixed_mapper, False, False),
        ("mixed sizes, masked, ordered by size (build_dw_test_loader)", mixed_mapper, True, True),
    ):  # fmt: skip
        model.test_mask_padding = mask
        exact[variant] = {}
        for b in args.batch_sizes:
            print(f"  {variant}, batch {b} ...", flush=True)
            predictions, seconds = predict(model, cfg, dataset, b, mapper, ordered=ordered)
            exact[variant][b] = {"predictions": predictions, "seconds": seconds}
        reference = exact[variant][args.batch_sizes[0]]["predictions"]
        for r in exact[variant].values():
            r["comparison"] = compare_detections(reference, r["predictions"])
            r["ap"] = coco_ap(dataset, r["predictions"])
            r["images"] = len(r.pop("predictions"))
    model.test_mask_padding = True
    out["batched"] = {
        "exactness": exact,
        "images_per_s": {" / ".join(map(str, k)): v for k, v in rates.items()},
    }
    print(
        f"Demo model ({args.weights}), {dataset}, {args.device}; detections compared with batch "
        f"{args.batch_sizes[0]} (same class, IoU >= {MATCH_IOU}):\n"
        + format_exactness(exact, args.batch_sizes)
        + f"\n\nModel calls on the first {len(dicts)} mapped images (as they are, 256x320, and "
        f"mixed sizes), median of {args.repeats} rounds after {args.warmup} warm-up, cases "
        "interleaved; ratio = median of same-round ratios to batch "
        f"{args.batch_sizes[0]} of the same images:\n" + format_throughput(rates),
        flush=True,
    )
    path = Path(args.output_dir) / "batched_images_per_s.png"
    groups = {}
    for (images, padding, b), r in rates.items():
        groups.setdefault(f"batch {b}", {})[f"{images} {padding}".strip()] = statistics.median(r)
    bar_chart(
        groups,
        path,
        f"Demo model inference on {args.device}, images per second at each batch size and "
        "padding, same run as the tables",
        "images / s",
        value_format="{:.1f}",
    )
    print(f"  plot: {path}", flush=True)
    return out["batched"]
