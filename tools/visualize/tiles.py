"""A tiled dataset drawn back on its source image: every tile's boxes at their place, ordinary
boxes and crowd regions (boxes cut by a tile border that keep half their area or less) in two
colours, and the tile borders; for checking a conversion by eye."""

import json
import os

import numpy as np
from PIL import Image, ImageDraw

ORDINARY, CROWD, BORDER = (0, 255, 255), (255, 40, 40), (255, 255, 255)


def draw_tiled_source(json_file, image_root, source):
    """(H, W, 3) uint8 RGB image of the size the tiles cover: the tiles of ``source`` (a source
    file name, the images' ``source`` field) of a tiled COCO json (as
    :func:`sample_data.trees.convert_trees` writes it) put back together, boxes and borders."""
    with open(json_file) as f:
        coco = json.load(f)
    tiles = [i for i in coco["images"] if i.get("source") == source]
    if not tiles:
        raise ValueError(f"{json_file} has no tile of {source!r}")
    width = max(t["x0"] + t["width"] for t in tiles)
    height = max(t["y0"] + t["height"] for t in tiles)
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for t in tiles:
        pixels = np.asarray(Image.open(os.path.join(image_root, t["file_name"])).convert("RGB"))
        canvas[t["y0"] : t["y0"] + t["height"], t["x0"] : t["x0"] + t["width"]] = pixels
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    origin = {t["id"]: (t["x0"], t["y0"]) for t in tiles}
    for a in coco["annotations"]:
        if a["image_id"] in origin:
            x0, y0 = origin[a["image_id"]]
            x, y, w, h = a["bbox"]
            colour = CROWD if a["iscrowd"] else ORDINARY
            draw.rectangle([x0 + x, y0 + y, x0 + x + w, y0 + y + h], outline=colour, width=2)
    for t in tiles:
        x0, y0 = t["x0"], t["y0"]
        draw.rectangle([x0, y0, x0 + t["width"] - 1, y0 + t["height"] - 1], outline=BORDER)
    return np.asarray(picture)
