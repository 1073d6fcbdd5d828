#!/usr/bin/env python
"""Draw what Dual Weighting assigns to the anchor points of training images.

For each image (a registered dataset's record, picked by index) the model's backbone and head
run on the image as the trainer feeds it (detectron2's DatasetMapper, annotations kept, resized
to the test size without flipping), and :func:`dual_weighting.assignment_maps.dw_assignment_maps`
computes the DW weights exactly as the training loss does. One PNG per image shows, for each
ground-truth box (a block of three rows) and each FPN level (a column):

- the center prior (a fixed Gaussian around the box centre, 0 outside the box),
- the positive weight (how much the point is trained as a positive of this box),
- the negative weight of the box's class (1 = a full negative; lower where the prediction
  already fits the box well),

and, on the left, the image with the box and its strongly positive points: the fewest points
that carry ``--strong-mass`` of the box's positive weight, coloured by level.

Examples:
    # A briefly trained demo model on the generated dataset's first training images:
    python tools/visualize_assignment.py --config-file configs/dw_R_18_FPN_synthetic_demo.yaml \\
        --indices 0 1 --output output/assignment --opts MODEL.WEIGHTS output/demo/model_final.pth
    # Any COCO-format dataset, random init:
    python tools/visualize_assignment.py --config-file configs/dw_R_50_FPN_1x.yaml \\
        --register-coco mine=ann.json:images/ --dataset mine --output out/ \\
        --opts MODEL.WEIGHTS "" MODEL.DEVICE cpu
"""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog, detection_utils
from detectron2.modeling import build_model
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from dual_weighting import add_dw_config
from dual_weighting.assignment import dw_assign
from dual_weighting.assignment_maps import dw_assignment_maps, split_levels, strong_positives
from dual_weighting.data import default_synthetic_root, register_coco_from_spec, register_synthetic

# Strong positives on the image, one colour per level (none close to the heat maps' yellow).
LEVEL_COLORS = ("#e6194b", "#f58231", "#3cb44b", "#42d4f4", "#f032e6", "#4363d8", "#911eb4")
# Strong positives on the positive-weight maps, where the column tells the level.
STRONG_ON_MAP = "#00e5ff"
ROWS = (
    ("prior", "center prior", "viridis"),
    ("pos_weight", "positive weight", "inferno"),
    ("neg_weight_of_class", "negative weight\nof the box's class", "cividis"),
)


def setup_cfg(args):
    cfg = get_cfg()
    add_dw_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print("CUDA is not available: running on the CPU.")
        cfg.MODEL.DEVICE = "cpu"
    return cfg


def load_model(cfg, seed=0):
    """The config's model in eval mode, with ``MODEL.WEIGHTS`` or, if empty, a seeded init."""
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    if cfg.MODEL.WEIGHTS:
        DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    return model


def training_mapper(cfg):
    """detectron2's training mapper (annotations kept, crowd boxes dropped) with the test resize
    and no flip, so that the picture is deterministic."""
    return DatasetMapper(
        is_train=True,
        augmentations=detection_utils.build_augmentation(cfg, is_train=False),
        image_format=cfg.INPUT.FORMAT,
    )


@torch.no_grad()
def compute_assignment(model, mapped):
    """Run the backbone and head on one mapped record, as training does, and return the maps.

    Returns:
        ``(maps, level_shapes, level_strides)``: the dict of :func:`dw_assignment_maps` (on the
        CPU) and each level's (H_l, W_l) and stride.
    """
    images = model.preprocess_image([mapped])
    features = model.backbone(images.tensor)
    features = [features[f] for f in model.head_in_features]
    logits, box_ltrb, centerness = model._transpose_dense_predictions(
        model.head(features), [model.num_classes, 4, 1]
    )
    points, strides = model.anchor_points(features)
    instances = mapped["instances"].to(model.device)
    accepted = inspect.signature(dw_assign).parameters  # loss_kwargs less the loss factors
    kwargs = {k: v for k, v in model.loss_kwargs.items() if k in accepted}
    maps = dw_assignment_maps(
        points,
        strides,
        torch.cat(logits, dim=1)[0].float(),
        torch.cat(centerness, dim=1)[0, :, 0].float(),
        torch.cat(box_ltrb, dim=1)[0].float(),
        instances.gt_boxes.tensor,
        instances.gt_classes,
        **kwargs,
    )
    maps = {k: v.cpu() for k, v in maps.items()}
    shapes = [tuple(f.shape[-2:]) for f in features]
    return maps, shapes, list(model.anchor_generator.strides)


def pick_boxes(boxes, max_boxes):
    """Up to ``max_boxes`` box indices spread over the range of areas, largest first."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(area, descending=True, stable=True).tolist()
    if len(order) <= max_boxes:
        return order
    spread = np.linspace(0, len(order) - 1, max_boxes).round().astype(int)
    return [order[i] for i in spread]


def _crop(box, image_hw):
    """View limits around ``box``: the box plus a quarter of its size (at least 24 px)."""
    x1, y1, x2, y2 = box
    margin = max(0.25 * max(x2 - x1, y2 - y1), 24.0)
    return (
        max(x1 - margin, 0.0),
        min(x2 + margin, float(image_hw[1])),
        min(y2 + margin, float(image_hw[0])),
        max(y1 - margin, 0.0),
    )


def _box_patch(box, **kwargs):
    x1, y1, x2, y2 = box
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **kwargs)


def draw_assignment(
    image,
    gt_boxes,
    gt_classes,
    class_names,
    maps,
    level_shapes,
    level_strides,
    box_indices,
    strong_mass=0.5,
    title="",
):
    """One figure: for each box of ``box_indices``, the image with its strong positives and a
    3 x L grid of per-level maps (prior, positive weight, negative weight of its class).

    Args:
        image: (H, W, 3) uint8 RGB, the resized image the model saw.
        gt_boxes: (G, 4) XYXY pixels of that image; gt_classes: (G,).
        class_names: names of the C classes.
        maps: the dict of :func:`dw_assignment_maps`.
        level_shapes, level_strides: (H_l, W_l) and stride of each level.
        box_indices: boxes to draw, in this order.

    Returns:
        matplotlib Figure.
    """
    num_levels = len(level_shapes)
    strong = split_levels(strong_positives(maps["pos_weight"], strong_mass), level_shapes)
    inside = split_levels(maps["inside"], level_shapes)
    per_level = {key: split_levels(maps[key], level_shapes) for key, _, _ in ROWS}
    gray = image.mean(axis=2).astype(np.uint8)
    height, width = image.shape[:2]

    fig = Figure(figsize=(2.3 * (1.7 + num_levels) + 0.6, 2.25 * 3 * len(box_indices) + 1.6))
    grid = fig.add_gridspec(
        3 * len(box_indices),
        num_levels + 2,
        width_ratios=[1.7] + [1.0] * num_levels + [0.07],
        left=0.07,
        right=0.95,
        top=1 - 1.4 / fig.get_figheight(),
        bottom=0.02,
        hspace=0.3,
        wspace=0.15,
    )
    for block, g in enumerate(box_indices):
        box = gt_boxes[g].tolist()
        name = class_names[int(gt_classes[g])] if class_names else str(int(gt_classes[g]))
        xlim_lo, xlim_hi, ylim_lo, ylim_hi = _crop(box, (height, width))
        counts = [int(s[g].sum()) for s in strong]

        ax = fig.add_subplot(grid[3 * block : 3 * block + 3, 0])
        ax.imshow(image)
        for other in gt_boxes.tolist():
            ax.add_patch(_box_patch(other, edgecolor="white", linewidth=0.6, alpha=0.6))
        ax.add_patch(_box_patch(box, edgecolor="white", linewidth=2.0, linestyle="--"))
        for level, stride in enumerate(level_strides):
            rows, cols = np.nonzero(strong[level][g].numpy())
            ax.scatter(
                (cols + 0.5) * stride,
                (rows + 0.5) * stride,
                s=28,
                color=LEVEL_COLORS[level % len(LEVEL_COLORS)],
                edgecolors="black",
                linewidths=0.6,
                zorder=3,
            )
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_axis_off()
        w, h = box[2] - box[0], box[3] - box[1]
        ax.set_title(
            f"box {g}: {name}, {w:.0f} x {h:.0f} px\n"
            f"{int(maps['inside'][g].sum())} candidate points, "
            f"{sum(counts)} strongly positive",
            fontsize=9,
        )

        for row, (key, label, cmap) in enumerate(ROWS):
            values = [v[g].numpy() for v in per_level[key]]
            vmax = 1.0 if key != "pos_weight" else max(float(maps[key][g].max()), 1e-12)
            image_artist = None
            for level, (shape, stride) in enumerate(zip(level_shapes, level_strides)):
                ax = fig.add_subplot(grid[3 * block + row, 1 + level])
                ax.imshow(gray, cmap="gray", extent=(0, width, height, 0), alpha=0.9)
                data = values[level]
                if key != "neg_weight_of_class":
                    data = np.ma.masked_where(~inside[level][g].numpy(), data)
                image_artist = ax.imshow(
                    data,
                    cmap=cmap,
                    vmin=0.0,
                    vmax=vmax,
                    alpha=0.8,
                    interpolation="nearest",
                    extent=(0, shape[1] * stride, shape[0] * stride, 0),
                )
                ax.add_patch(_box_patch(box, edgecolor="white", linewidth=1.2, linestyle="--"))
                if key == "pos_weight":
                    rows, cols = np.nonzero(strong[level][g].numpy())
                    ax.scatter(
                        (cols + 0.5) * stride,
                        (rows + 0.5) * stride,
                        s=22,
                        facecolors="none",
                        edgecolors=STRONG_ON_MAP,
                        linewidths=1.4,
                    )
                ax.set_xlim(xlim_lo, xlim_hi)
                ax.set_ylim(ylim_lo, ylim_hi)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(
                        f"P{int(np.log2(stride))} (stride {stride}): {counts[level]} strong",
                        fontsize=8,
                    )
                if level == 0:
                    ax.set_ylabel(label, fontsize=8)
            cax = fig.add_subplot(grid[3 * block + row, num_levels + 1])
            fig.colorbar(image_artist, cax=cax)
            cax.tick_params(labelsize=7)

    handles = [
        Line2D([], [], color="white", linestyle="--", linewidth=1.5, label="ground-truth box"),
        Patch(facecolor="lightgray", edgecolor="gray", label="outside the box: prior, weight 0"),
    ] + [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=6,
            markerfacecolor=LEVEL_COLORS[i % len(LEVEL_COLORS)],
            markeredgecolor="black",
            label=f"strongly positive, P{int(np.log2(s))}",
        )
        for i, s in enumerate(level_strides)
    ]
    handles.insert(
        2,
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markersize=6,
            markerfacecolor="none",
            markeredgecolor=STRONG_ON_MAP,
            label="strongly positive (on the maps)",
        ),
    )
    legend = fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(len(handles), 4),
        fontsize=8,
        bbox_to_anchor=(0.5, 1 - 0.55 / fig.get_figheight()),
        facecolor="#555555",
        labelcolor="white",
    )
    legend.get_frame().set_alpha(0.9)
    fig.suptitle(
        f"{title}\nstrongly positive = the fewest points carrying {strong_mass:.0%} of a box's "
        "positive weight; positive-weight colours are scaled per box",
        fontsize=10,
        y=1 - 0.05 / fig.get_figheight(),
        va="top",
    )
    return fig


def describe(maps, level_shapes, level_strides, box_indices, class_names, gt_classes, mass):
    """One text line per box: bag size, total positive weight and strong points per level."""
    strong = split_levels(strong_positives(maps["pos_weight"], mass), level_shapes)
    inside = split_levels(maps["inside"], level_shapes)
    lines = []
    for g in box_indices:
        per_level = ", ".join(
            f"P{int(np.log2(s))} {int(i[g].sum())}/{int(t[g].sum())}"
            for i, t, s in zip(inside, strong, level_strides)
        )
        name = class_names[int(gt_classes[g])] if class_names else str(int(gt_classes[g]))
        lines.append(
            f"  box {g} ({name}): sum of positive weights {float(maps['pos_weight'][g].sum()):.3f};"
            f" candidate/strong points per level: {per_level}"
        )
    return "\n".join(lines)


def select_records(records, indices, images=None):
    """Indices of the records to draw: ``indices``, or the records whose image file is named
    ``images`` (a base name, or a path ending like the record's)."""
    if images:
        names = [os.path.normpath(r["file_name"]) for r in records]
        selected = []
        for image in images:
            image = os.path.normpath(image)
            found = [i for i, n in enumerate(names) if n == image or n.endswith(os.sep + image)]
            if not found:
                raise SystemExit(f"no record of the dataset has the image {image!r}")
            selected += found[:1]
        return selected
    bad = [i for i in indices if not -len(records) <= i < len(records)]
    if bad:
        raise SystemExit(f"--indices {bad}: the dataset has {len(records)} records")
    return list(indices)


def to_rgb(image_chw, input_format):
    image = image_chw.permute(1, 2, 0).numpy()
    return detection_utils.convert_image_to_rgb(image, input_format).astype(np.uint8)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("Examples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config-file", required=True, metavar="FILE")
    parser.add_argument(
        "--dataset", help="registered dataset name (default: the config's first DATASETS.TRAIN)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--indices", type=int, nargs="+", default=[0], help="records of the dataset to draw"
    )
    which.add_argument(
        "--images", nargs="+", metavar="FILE_NAME", help="records to draw, by image file name"
    )
    parser.add_argument(
        "--register-coco",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a COCO-format dataset under NAME first (repeatable)",
    )
    parser.add_argument("--output", required=True, help="folder for the PNG files")
    parser.add_argument("--max-boxes", type=int, default=4, help="boxes drawn per image")
    parser.add_argument(
        "--strong-mass",
        type=float,
        default=0.5,
        help="strongly positive points: the fewest that carry this share of the positive weight",
    )
    parser.add_argument("--seed", type=int, default=0, help="random init when MODEL.WEIGHTS is ''")
    parser.add_argument("--dpi", type=int, default=90)
    parser.add_argument(
        "--opts", nargs=argparse.REMAINDER, default=[], help="config overrides, KEY VALUE pairs"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    register_synthetic(default_synthetic_root())
    for spec in args.register_coco:
        register_coco_from_spec(spec)
    cfg = setup_cfg(args)
    dataset = args.dataset or cfg.DATASETS.TRAIN[0]
    records = DatasetCatalog.get(dataset)
    class_names = MetadataCatalog.get(dataset).get("thing_classes")
    model = load_model(cfg, args.seed)
    mapper = training_mapper(cfg)
    weights = cfg.MODEL.WEIGHTS or f"random init (seed {args.seed})"
    os.makedirs(args.output, exist_ok=True)

    written = []
    for index in select_records(records, args.indices, args.images):
        record = records[index]
        mapped = mapper(record)
        gt = mapped["instances"]
        maps, shapes, strides = compute_assignment(model, mapped)
        boxes = pick_boxes(gt.gt_boxes.tensor, args.max_boxes)
        stem = Path(record["file_name"]).stem
        print(f"{dataset}[{index}] {record['file_name']}: {len(gt)} boxes, drawing {boxes}")
        if not boxes:
            print("  no box: nothing to draw")
            continue
        print(describe(maps, shapes, strides, boxes, class_names, gt.gt_classes, args.strong_mass))
        fig = draw_assignment(
            to_rgb(mapped["image"], cfg.INPUT.FORMAT),
            gt.gt_boxes.tensor,
            gt.gt_classes,
            class_names,
            maps,
            shapes,
            strides,
            boxes,
            args.strong_mass,
            title=f"DW assignment: {dataset}[{index}] ({stem}), "
            f"{os.path.basename(args.config_file)}, weights: {weights}",
        )
        path = os.path.join(args.output, f"{stem}_assignment.png")
        fig.savefig(path, dpi=args.dpi)
        written.append(path)
        print(f"  wrote {path}")
    return written


if __name__ == "__main__":
    main()
