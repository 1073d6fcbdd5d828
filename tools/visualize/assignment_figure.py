"""Pictures of what DW assigns in one image (matplotlib, no display needed), from the maps of
:func:`~.assignment_maps.dw_assignment_maps` (e.g. through
:func:`~.assignment_model.compute_assignment`)."""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data import detection_utils
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from .assignment_maps import split_levels, strong_positives

# Strong positives on the image, one colour per level (none close to the heat maps' yellow).
LEVEL_COLORS = ("#e6194b", "#f58231", "#3cb44b", "#42d4f4", "#f032e6", "#4363d8", "#911eb4")
# Strong positives on the positive-weight maps, where the column tells the level.
STRONG_ON_MAP = "#00e5ff"
# The three rows of a box's block: key of the maps, row label, colour map.
ROWS = (
    ("prior", "center prior", "viridis"),
    ("pos_weight", "positive weight", "inferno"),
    ("neg_weight_of_class", "negative weight\nof the box's class", "cividis"),
)


def pick_boxes(boxes, max_boxes):
    """Up to ``max_boxes`` box indices spread over the range of areas, largest first."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(area, descending=True, stable=True).tolist()
    if len(order) <= max_boxes:
        return order
    spread = np.linspace(0, len(order) - 1, max_boxes).round().astype(int)
    return [order[i] for i in spread]


def _box_patch(box, **kwargs):
    x1, y1, x2, y2 = box
    return Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, **kwargs)


def _scatter_cells(ax, mask, stride, **style):
    """Mark the centres of the True cells of one level's (H_l, W_l) ``mask``, in pixels."""
    rows, cols = np.nonzero(mask.numpy())
    ax.scatter((cols + 0.5) * stride, (rows + 0.5) * stride, **style)


def _point_handle(face, edge, label):
    style = {"marker": "o", "linestyle": "", "markersize": 6, "markeredgecolor": edge}
    return Line2D([], [], markerfacecolor=face, label=label, **style)


def _box_name(class_names, gt_classes, g):
    return class_names[int(gt_classes[g])] if class_names else str(int(gt_classes[g]))


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
    """One figure: for each box of ``box_indices`` (in this order), the image with the box and
    its strong positives (:func:`strong_positives` of ``strong_mass``) coloured by level, and a
    3 x L grid of per-level maps (prior, positive weight, negative weight of its class).

    Args:
        image: (H, W, 3) uint8 RGB, the resized image the model saw.
        gt_boxes: (G, 4) XYXY pixels of that image; gt_classes: (G,).
        class_names: names of the C classes.
        maps: the dict of :func:`dw_assignment_maps`.
        level_shapes, level_strides: (H_l, W_l) and stride of each level.

    Returns:
        matplotlib Figure.
    """
    num_levels = len(level_shapes)
    colours = [LEVEL_COLORS[i % len(LEVEL_COLORS)] for i in range(num_levels)]
    strong = split_levels(strong_positives(maps["pos_weight"], strong_mass), level_shapes)
    inside = split_levels(maps["inside"], level_shapes)
    per_level = {key: split_levels(maps[key], level_shapes) for key, _, _ in ROWS}
    gray = image.mean(axis=2).astype(np.uint8)
    height, width = image.shape[:2]

    fig = Figure(figsize=(2.3 * (1.7 + num_levels) + 0.6, 2.25 * 3 * len(box_indices) + 1.6))
    top, ratios = 1 - 1.4 / fig.get_figheight(), [1.7] + [1.0] * num_levels + [0.07]
    grid = fig.add_gridspec(3 * len(box_indices), num_levels + 2, width_ratios=ratios, top=top)
    grid.update(left=0.07, right=0.95, bottom=0.02, hspace=0.3, wspace=0.15)
    for block, g in enumerate(box_indices):
        box = gt_boxes[g].tolist()
        x1, y1, x2, y2 = box
        margin = max(0.25 * max(x2 - x1, y2 - y1), 24.0)  # the maps' view: box + a quarter
        xlim = (max(x1 - margin, 0.0), min(x2 + margin, float(width)))
        ylim = (min(y2 + margin, float(height)), max(y1 - margin, 0.0))
        counts = [int(s[g].sum()) for s in strong]

        ax = fig.add_subplot(grid[3 * block : 3 * block + 3, 0])
        ax.imshow(image)
        for other in gt_boxes.tolist():
            ax.add_patch(_box_patch(other, edgecolor="white", linewidth=0.6, alpha=0.6))
        ax.add_patch(_box_patch(box, edgecolor="white", linewidth=2.0, linestyle="--"))
        for level, stride in enumerate(level_strides):
            style = {"edgecolors": "black", "linewidths": 0.6, "zorder": 3}
            _scatter_cells(ax, strong[level][g], stride, s=28, color=colours[level], **style)
        ax.set_xlim(0, width)
        ax.set_ylim(height, 0)
        ax.set_axis_off()
        ax.set_title(
            f"box {g}: {_box_name(class_names, gt_classes, g)}, {x2 - x1:.0f} x {y2 - y1:.0f} px\n"
            f"{int(maps['inside'][g].sum())} candidate points, {sum(counts)} strongly positive",
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
                extent = (0, shape[1] * stride, shape[0] * stride, 0)
                style = {"alpha": 0.8, "interpolation": "nearest", "extent": extent}
                image_artist = ax.imshow(data, cmap=cmap, vmin=0.0, vmax=vmax, **style)
                ax.add_patch(_box_patch(box, edgecolor="white", linewidth=1.2, linestyle="--"))
                if key == "pos_weight":
                    style = {"facecolors": "none", "edgecolors": STRONG_ON_MAP, "linewidths": 1.4}
                    _scatter_cells(ax, strong[level][g], stride, s=22, **style)
                ax.set_xlim(*xlim)
                ax.set_ylim(*ylim)
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

    # The legend above the grid: box outline, outside-the-box cells and the point markers.
    handles = [
        Line2D([], [], color="white", linestyle="--", linewidth=1.5, label="ground-truth box"),
        Patch(facecolor="lightgray", edgecolor="gray", label="outside the box: prior, weight 0"),
        _point_handle("none", STRONG_ON_MAP, "strongly positive (on the maps)"),
    ] + [
        _point_handle(c, "black", f"strongly positive, P{int(np.log2(s))}")
        for c, s in zip(colours, level_strides)
    ]
    anchor = (0.5, 1 - 0.55 / fig.get_figheight())
    style = {"fontsize": 8, "facecolor": "#555555", "labelcolor": "white"}
    legend = fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(len(handles), 4),
        bbox_to_anchor=anchor,
        **style,
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


def describe_assignment(
    maps, level_shapes, level_strides, box_indices, class_names, gt_classes, mass
):
    """One text line per box: bag size, total positive weight and strong points per level."""
    strong = split_levels(strong_positives(maps["pos_weight"], mass), level_shapes)
    inside = split_levels(maps["inside"], level_shapes)
    lines = []
    for g in box_indices:
        per_level = ", ".join(
            f"P{int(np.log2(s))} {int(i[g].sum())}/{int(t[g].sum())}"
            for i, t, s in zip(inside, strong, level_strides)
        )
        total = float(maps["pos_weight"][g].sum())
        lines.append(
            f"  box {g} ({_box_name(class_names, gt_classes, g)}): sum of positive weights "
            f"{total:.3f}; candidate/strong points per level: {per_level}"
        )
    return "\n".join(lines)


def to_rgb(image_chw, input_format):
    """(H, W, 3) uint8 RGB of a mapped record's (3, H, W) ``image`` in ``INPUT.FORMAT``."""
    image = image_chw.permute(1, 2, 0).numpy()
    return detection_utils.convert_image_to_rgb(image, input_format).astype(np.uint8)
