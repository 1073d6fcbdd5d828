"""A generated COCO-format dataset of coloured shapes on cluttered backgrounds, registered as
``dw_synthetic_train`` / ``dw_synthetic_val`` (``dual_weighting.data.register_synthetic``);
:func:`ensure_synthetic` writes and registers it.

Small enough for a ResNet-18-FPN trained from scratch on a CPU in minutes, yet it exercises label
assignment: six shape classes (colour a hint, not the answer), objects from ~13 px to most of the
image (positives on every FPN level), overlaps, textured backgrounds, unannotated distractors.
The same arguments give byte-identical files; each image has its own random stream from (seed,
split, index), so adding images changes no existing one. An object is only placed where it leaves
every earlier one ``min_visibility`` of its pixels; annotations less visible than that in the end
(thin lines drawn last) are dropped. ``segmentation`` is the whole (amodal) shape, ``bbox`` and
``area`` its box and area; the extra key ``visibility`` is the visible fraction of its pixels.
"""

import colorsys
import inspect
import json
import logging
import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from dual_weighting.data import CLASS_NAMES, default_synthetic_root, register_synthetic

from . import recorded_info

logger = logging.getLogger(__name__)
# Each class has a typical hue (degrees); colour helps but is not decisive (see render_image).
_CLASS_HUES = (0.0, 60.0, 120.0, 180.0, 240.0, 300.0)
_SPLITS = ("train", "val")


def _unit_outline(name, rng):
    """Return the shape's polygon(s) in a unit circle: a list of (N, 2) arrays, the first one the
    outer outline and any further ones holes."""
    if name in ("circle", "ring"):
        t = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
        outer = np.stack([np.cos(t), np.sin(t)], axis=1)
        if name == "circle":
            return [outer]
        return [outer, outer * rng.uniform(0.45, 0.65)]
    if name == "square":
        return [np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) / math.sqrt(2)]
    if name == "triangle":
        t = math.pi / 2 + np.arange(3) * 2.0 * math.pi / 3
        return [np.stack([np.cos(t), np.sin(t)], axis=1)]
    if name == "cross":
        a = rng.uniform(0.28, 0.38)  # half-width of the arms
        xy = [(a, -1), (a, -a), (1, -a), (1, a), (a, a), (a, 1)]
        xy += [(-a, 1), (-a, a), (-1, a), (-1, -a), (-a, -a), (-a, -1)]
        return [np.array(xy, dtype=np.float64)]
    if name == "star":
        t = -math.pi / 2 + np.arange(10) * math.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return [np.stack([r * np.cos(t), r * np.sin(t)], axis=1)]
    raise ValueError(f"Unknown shape {name!r}")


def _transform(outlines, size, aspect, angle, image_hw):
    """Scale unit outlines to a circumscribed diameter ``size``, stretch x by ``aspect``, rotate by
    ``angle`` and shrink if needed so that the shape fits in the image. Centred at the origin."""
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])
    out = [(p * [0.5 * size * aspect, 0.5 * size]) @ rot for p in outlines]
    pts = out[0]
    extent = pts.max(axis=0) - pts.min(axis=0)  # (w, h)
    shrink = min(1.0, (image_hw[1] - 2) / extent[0], (image_hw[0] - 2) / extent[1])
    return [p * shrink for p in out]


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _hsv(h_deg, s, v):
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v)) * 255.0


def _dull_colour(rng):
    """A random low-saturation colour (distractors and lines), an RGB tuple of ints."""
    return tuple(int(c) for c in _hsv(rng.uniform(0, 360), rng.uniform(0, 0.3), rng.random()))


def _background(rng, h, w):
    """Low-saturation, mid-dark texture: a smooth colour field plus mostly grey blotches."""
    base = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.25), rng.uniform(0.18, 0.45))
    img = np.broadcast_to(base.astype(np.float32), (h, w, 3)).copy()
    for gh, gw, amp, grey in ((3, 4, 45.0, 0.0), (max(h // 16, 1), max(w // 16, 1), 30.0, 0.8)):
        grid = rng.uniform(0.0, 255.0, size=(gh, gw, 3))
        grid = (grey * grid.mean(axis=2, keepdims=True) + (1 - grey) * grid).astype(np.uint8)
        up = np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), dtype=np.float32)
        img += (up - 127.5) * (amp / 127.5)
    return img


def _draw_distractors(rng, img, n):
    """Unannotated clutter under the objects: desaturated elongated ellipses, irregular blobs and
    polylines. Their colour and shape keep them apart from the annotated classes."""
    h, w = img.shape[:2]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(n):
        colour = _dull_colour(rng)
        kind = rng.integers(3)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.03, 0.2) * min(h, w)
        if kind == 0:  # elongated ellipse (aspect 3-8, never a "circle")
            t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
            pts = np.stack([np.cos(t) * r, np.sin(t) * r / rng.uniform(3.0, 8.0)], axis=1)
            a = rng.uniform(0, math.pi)
            pts = pts @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])
        elif kind == 1:  # irregular blob
            t = np.sort(rng.uniform(0, 2 * math.pi, size=int(rng.integers(8, 14))))
            rad = r * rng.uniform(0.4, 1.0, size=t.shape)
            pts = np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)
        else:  # polyline
            steps = rng.normal(0, r * 0.6, size=(int(rng.integers(2, 6)), 2))
            pts = np.cumsum(steps, axis=0)
        xy = [(float(x + cx), float(y + cy)) for x, y in pts]
        if kind == 2:
            draw.line(xy, fill=colour, width=int(rng.integers(1, 5)))
        else:
            draw.polygon(xy, fill=colour)
    return np.asarray(canvas, dtype=np.float32)


def _place(rng, unit, owner, visible, pixels, min_visibility, tries=20):
    """A random position for the shape ``unit`` (centred at the origin) leaving every earlier
    object ``min_visibility`` of its ``pixels``: (polygons, (x0, y0, x1, y1) crop, mask of the
    crop, pixels hidden per earlier object), or None when ``tries`` attempts find none."""
    h, w = owner.shape
    lo, hi = unit[0].min(axis=0), unit[0].max(axis=0)
    for _ in range(tries):
        offset = rng.uniform([-lo[0], -lo[1]], [w - 1 - hi[0], h - 1 - hi[1]])
        polys = [p + offset for p in unit]
        x0, y0 = (int(v) for v in np.floor(polys[0].min(axis=0)))
        x1, y1 = (min(int(v) + 2, lim) for v, lim in zip(np.ceil(polys[0].max(axis=0)), (w, h)))
        # The crop's mask: the outline filled, any further polygon cut out as a hole.
        canvas = Image.new("L", (x1 - x0, y1 - y0), 0)
        for i, poly in enumerate(polys):
            xy = [(float(x - x0), float(y - y0)) for x, y in poly]
            ImageDraw.Draw(canvas).polygon(xy, fill=0 if i else 255)
        mask = np.asarray(canvas) > 0
        if not mask.any():
            return None
        covered = owner[y0:y1, x0:x1][mask]
        hit = np.bincount(covered[covered >= 0], minlength=len(visible))
        if all(visible[k] - hit[k] >= min_visibility * pixels[k] for k in np.flatnonzero(hit)):
            return polys, (x0, y0, x1, y1), mask, hit
    return None


def render_image(rng, image_size, objects_per_image, size_range, min_visibility):
    """Draw one image.

    Returns:
        (H, W, 3) uint8 array, and a list of objects (dicts with ``category`` (0-based),
        ``polygons`` (list of (N, 2) arrays: outline then holes, image coordinates), ``area``,
        ``visibility``) in drawing order, objects hidden beyond ``min_visibility`` left out;
        and the (H, W) int32 map of which object (index into that list, -1 for anything else)
        each pixel shows.
    """
    h, w = image_size
    img = _background(rng, h, w)
    img = _draw_distractors(rng, img, int(rng.integers(3, 11)))
    owner = np.full((h, w), -1, dtype=np.int32)
    objects, visible = [], []  # visible[k]: pixel count of object k still showing
    n = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    log_size = rng.uniform(math.log(size_range[0]), math.log(size_range[1]), size=n)
    # Mostly larger objects first, so that small ones tend to lie on top (as in photographs)
    # and few large objects are skipped for hiding others.
    for size in np.exp(log_size[np.argsort(-(log_size + rng.normal(0.0, 0.5, size=n)))]):
        cls = int(rng.integers(len(CLASS_NAMES)))
        aspect = rng.uniform(0.8, 1.25)
        angle = rng.uniform(0, 2 * math.pi) if CLASS_NAMES[cls] not in ("circle", "ring") else 0.0
        unit = _transform(_unit_outline(CLASS_NAMES[cls], rng), size, aspect, angle, (h, w))
        placed = _place(rng, unit, owner, visible, [o["pixels"] for o in objects], min_visibility)
        if placed is None:
            continue  # no position keeps the earlier objects visible enough: skip this one
        polys, (x0, y0, x1, y1), mask, hit = placed
        for k in np.flatnonzero(hit):
            visible[k] -= int(hit[k])
        owner[y0:y1, x0:x1][mask] = len(objects)
        visible.append(int(mask.sum()))
        # A gentle linear shading across the object, so that it is not perfectly flat, and a
        # darker 1 px rim, so that objects of similar colour stay apart where they overlap.
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        gx, gy = rng.uniform(-0.25, 0.25, size=2) / max(x1 - x0, y1 - y0)
        shade = 1.0 + gx * (xx - (x0 + x1) / 2) + gy * (yy - (y0 + y1) / 2)
        padded = np.pad(mask, 1)  # the rim: pixels of the mask with a 4-neighbour outside it
        inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        shade[mask & ~inner] *= 0.55
        # Mostly the class hue with jitter; sometimes any hue, so that shape must be learnt too.
        any_hue = rng.random() < 0.2
        hue = rng.uniform(0.0, 360.0) if any_hue else _CLASS_HUES[cls] + rng.uniform(-20.0, 20.0)
        colour = _hsv(hue, rng.uniform(0.55, 1.0), rng.uniform(0.7, 1.0)).astype(np.float32)
        patch = img[y0:y1, x0:x1]
        patch[mask] = (shade[..., None] * colour)[mask]
        objects.append({"category": cls, "polygons": polys, "pixels": int(mask.sum())})

    # A few thin lines over everything; they may hide a little of some objects.
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    lines = Image.new("L", (w, h), 0)
    for _ in range(int(rng.integers(0, 3))):
        xy = [(float(rng.uniform(0, w)), float(rng.uniform(0, h))) for _ in range(2)]
        colour, width = _dull_colour(rng), int(rng.integers(1, 3))
        ImageDraw.Draw(canvas).line(xy, fill=colour, width=width)
        ImageDraw.Draw(lines).line(xy, fill=255, width=width)
    owner[np.asarray(lines) > 0] = -1
    canvas = canvas.filter(ImageFilter.SMOOTH)  # soften the hard polygon edges a little
    noise = rng.standard_normal(size=(h, w, 3), dtype=np.float32) * rng.uniform(3.0, 9.0)
    out = np.clip(np.asarray(canvas, dtype=np.float32) + noise, 0, 255).astype(np.uint8)

    counts = np.bincount(owner[owner >= 0].ravel(), minlength=len(objects))
    kept, remap = [], np.full(len(objects) + 1, -1, dtype=np.int32)  # remap[-1] stays -1
    for k, obj in enumerate(objects):
        obj["visibility"] = float(counts[k]) / obj.pop("pixels")
        if obj["visibility"] >= min_visibility:
            holes = sum(_shoelace(p) for p in obj["polygons"][1:])
            obj["area"] = _shoelace(obj["polygons"][0]) - holes
            remap[k] = len(kept)
            kept.append(obj)
    return out, kept, remap[owner]


def _coco_annotation(obj, ann_id, image_id):
    polys = obj["polygons"]
    seg = polys[0]
    if len(polys) > 1:  # outline and hole joined by a zero-width slit: pycocotools cuts the hole
        seg = np.concatenate([seg, seg[:1], polys[1][:1], polys[1][::-1]], axis=0)
    x0, y0 = polys[0].min(axis=0)
    x1, y1 = polys[0].max(axis=0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj["category"] + 1,
        "bbox": [round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
        "area": round(obj["area"], 2),
        "iscrowd": 0,
        "segmentation": [[round(float(v), 2) for v in seg.ravel()]],
        "visibility": round(obj["visibility"], 4),
    }


def synthetic_params(**kwargs):
    """The arguments of :func:`generate_synthetic_coco` (but ``root``), defaults filled in and
    normalised to json types, as recorded in the ``info`` of the json files it writes."""
    bound = inspect.signature(generate_synthetic_coco).bind(None, **kwargs)
    bound.apply_defaults()
    args = bound.arguments
    if args["image_format"] not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {args['image_format']!r}")
    h, w = (int(v) for v in args["image_size"])
    size_range = args["size_range"] or (0.07 * min(h, w), 0.85 * min(h, w))
    return {
        "num_train": int(args["num_train"]),
        "num_val": int(args["num_val"]),
        "image_size": [h, w],
        "seed": int(args["seed"]),
        "objects_per_image": [int(v) for v in args["objects_per_image"]],
        "size_range": [round(float(v), 4) for v in size_range],
        "min_visibility": float(args["min_visibility"]),
        "image_format": args["image_format"],
    }


def generate_synthetic_coco(
    root,
    *,
    num_train=400,
    num_val=100,
    image_size=(256, 320),
    seed=0,
    objects_per_image=(2, 8),
    size_range=None,
    min_visibility=0.5,
    image_format="jpg",
):
    """Write the dataset under ``root`` (files of the same names overwritten): ``train/``,
    ``val/`` and ``annotations/instances_{train,val}.json`` in COCO's json layout.

    Args:
        num_train, num_val (int): number of images per split.
        image_size (tuple[int, int]): (H, W) of every image.
        seed (int): all randomness derives from it.
        objects_per_image (tuple[int, int]): inclusive range of objects tried per image (a few
            are skipped where they cannot be placed without hiding others).
        size_range (tuple[float, float] or None): range of the object's circumscribed diameter
            in pixels, log-uniform. Default: 7% to 85% of the image's shorter side (COCO's
            small, medium and large buckets).
        min_visibility (float): smallest visible fraction of an annotated object.
        image_format (str): "jpg" (quality 90) or "png".

    Returns:
        dict: ``{"train": {...}, "val": {...}, "categories": [...]}`` where each split has
        ``json_file``, ``image_root``, ``num_images`` and ``num_annotations``.
    """
    params = synthetic_params(
        num_train=num_train, num_val=num_val, image_size=image_size, seed=seed,
        objects_per_image=objects_per_image, size_range=size_range,
        min_visibility=min_visibility, image_format=image_format,
    )  # fmt: skip
    h, w = params["image_size"]
    categories = [
        {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASS_NAMES)
    ]
    ann_dir = os.path.join(root, "annotations")
    os.makedirs(ann_dir, exist_ok=True)
    result = {"categories": categories}
    for split_index, (split, num) in enumerate(zip(_SPLITS, (num_train, num_val))):
        image_root = os.path.join(root, split)
        os.makedirs(image_root, exist_ok=True)
        images, annotations = [], []
        for i in range(int(num)):
            rng = np.random.default_rng([int(seed), split_index, i])
            pixels, objects, _ = render_image(
                rng, (h, w), params["objects_per_image"], params["size_range"], min_visibility
            )
            image_id = i + 1
            file_name = f"{image_id:06d}.{image_format}"
            save_args = {"quality": 90} if image_format == "jpg" else {}
            Image.fromarray(pixels).save(os.path.join(image_root, file_name), **save_args)
            images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
            for obj in objects:
                annotations.append(_coco_annotation(obj, len(annotations) + 1, image_id))
        json_file = os.path.join(ann_dir, f"instances_{split}.json")
        info = {"description": f"DW synthetic shapes ({split})", "version": "1.0", **params}
        data = {"info": info, "licenses": [], "images": images, "annotations": annotations}
        data["categories"] = categories
        with open(f"{json_file}.tmp{os.getpid()}", "w") as f:  # renamed when complete
            json.dump(data, f, separators=(",", ":"))
        os.replace(f.name, json_file)
        result[split] = {"json_file": json_file, "image_root": image_root}
        result[split].update(num_images=len(images), num_annotations=len(annotations))
    return result


def ensure_synthetic(root=None, prefix="dw_synthetic", **generate_kwargs):
    """Generate the dataset under ``root`` (``default_synthetic_root()`` when None) with
    ``generate_kwargs`` of :func:`generate_synthetic_coco` unless both json files record those
    arguments in their ``info``, then register it as ``{prefix}_train`` and ``{prefix}_val`` and
    return these names. In multi-process training call it in the main process before launching.
    """
    root = default_synthetic_root() if root is None else os.fspath(root)
    wanted, infos = synthetic_params(**generate_kwargs), [recorded_info(root, s) for s in _SPLITS]
    if any(info.get(k) != v for info in infos for k, v in wanted.items()):
        logger.info(f"Generating the synthetic dataset in {root} ...")
        generate_synthetic_coco(root, **generate_kwargs)
    return register_synthetic(root, prefix)
