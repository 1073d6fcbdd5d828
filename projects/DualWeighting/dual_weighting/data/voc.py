"""Pascal VOC XML annotations (one ``<annotation>`` file per image, as LabelImg, CVAT and the
VOC devkit write them) read into detectron2's dataset dicts, every problem named by file and line.

Boxes follow detectron2's own Pascal VOC loader: VOC's corners are 1-based pixel indices, so
``xmin`` and ``ymin`` move by -1 and the box is ``[xmin - 1, ymin - 1, xmax, ymax]`` in
``XYXY_ABS`` pixels.
"""

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

__all__ = ["FormatError", "VocObject", "VocAnnotation", "read_voc_xml", "voc_xml_files"]


class FormatError(ValueError):
    """An annotation file that cannot be read; the message names the file and, where it can,
    the line."""


@dataclass(frozen=True)
class VocObject:
    """One ``<object>``: class ``name``, ``box`` [x0, y0, x1, y1] (0-based ``XYXY_ABS`` pixels,
    float), VOC's ``difficult`` flag, whether the box was ``clipped`` to the image and the
    ``line`` of its ``<object>`` tag."""

    name: str
    box: tuple
    difficult: bool
    clipped: bool
    line: int


@dataclass(frozen=True)
class VocAnnotation:
    """One XML file: the image ``filename`` it names, its ``width`` and ``height`` (pixels, from
    ``<size>``) and its ``objects``."""

    path: str
    filename: str
    width: int
    height: int
    objects: tuple


def _parse(path, data):
    """The XML tree of ``data`` (read from ``path`` when None) and the line of every element's
    start tag, by id (ElementTree keeps no line numbers; expat reports them while parsing)."""
    if data is None:
        with open(path, "rb") as f:
            data = f.read()
    builder, lines = ET.TreeBuilder(), {}
    parser = expat.ParserCreate()

    def start(tag, attrs):
        lines[id(builder.start(tag, attrs))] = parser.CurrentLineNumber

    parser.StartElementHandler = start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise FormatError(f"{path}, line {e.lineno}: not well-formed XML ({e})") from None
    return builder.close(), lines


def read_voc_xml(path, data=None):
    """Read one Pascal VOC XML file, from ``path`` or from its bytes ``data`` (then ``path``
    only names it in messages).

    Boxes reaching past the image are clipped to it (and marked ``clipped``), as annotation
    tools often leave them a pixel over; a box with no area inside the image is an error.

    Raises:
        FormatError: the file is not XML, its root is not ``<annotation>``, or an element is
            missing, empty or not a number, or a box is empty; the message names file and line.

    Returns:
        VocAnnotation
    """
    path = os.fspath(path)
    root, lines = _parse(path, data)

    def where(element):
        return f"{path}, line {lines[id(element)]}"

    def text(parent, tag, what):
        child = parent.find(tag)
        if child is None or not (child.text or "").strip():
            raise FormatError(f"{where(parent)}: {what} has no <{tag}> (or it is empty)")
        return child, child.text.strip()

    def number(parent, tag, what):
        child, value = text(parent, tag, what)
        try:
            return float(value)
        except ValueError:
            message = f"{where(child)}: <{tag}> of {what} is {value!r}, not a number"
            raise FormatError(message) from None

    if root.tag != "annotation":
        raise FormatError(f"{where(root)}: the root element is <{root.tag}>, not <annotation>")
    _, filename = text(root, "filename", "<annotation>")
    size = root.find("size")
    if size is None:
        raise FormatError(f"{where(root)}: <annotation> has no <size> (image width and height)")
    width, height = (number(size, tag, "<size>") for tag in ("width", "height"))
    if width < 1 or height < 1 or width != int(width) or height != int(height):
        raise FormatError(
            f"{where(size)}: image size {width:g} x {height:g} is not a positive integer"
        )
    objects = []
    for k, obj in enumerate(root.iter("object")):
        _, name = text(obj, "name", f"<object> #{k + 1}")
        what = f"<object> #{k + 1} ({name!r})"
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise FormatError(f"{where(obj)}: {what} has no <bndbox>")
        x0, y0, x1, y1 = (number(bndbox, t, what) for t in ("xmin", "ymin", "xmax", "ymax"))
        box = (max(x0 - 1, 0.0), max(y0 - 1, 0.0), min(x1, width), min(y1, height))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise FormatError(
                f"{where(bndbox)}: {what} box xmin={x0:g} ymin={y0:g} xmax={x1:g} ymax={y1:g} "
                f"has no area inside the {width:g} x {height:g} image"
            )
        difficult = obj.find("difficult")
        is_difficult = difficult is not None and (difficult.text or "").strip() == "1"
        clipped = box != (x0 - 1, y0 - 1, x1, y1)
        objects.append(VocObject(name, box, is_difficult, clipped, lines[id(obj)]))
    return VocAnnotation(path, filename, int(width), int(height), tuple(objects))


def voc_xml_files(folder):
    """The ``.xml`` files directly in ``folder``, sorted.

    Raises:
        FileNotFoundError: ``folder`` is not a folder or holds no ``.xml`` file.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"Pascal VOC annotation folder {folder!r} not found")
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(".xml"))
    if not files:
        raise FileNotFoundError(f"Pascal VOC annotation folder {folder!r} holds no .xml file")
    return [os.path.join(folder, f) for f in files]
