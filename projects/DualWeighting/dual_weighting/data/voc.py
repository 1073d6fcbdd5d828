"""Pascal VOC XML annotations (LabelImg, CVAT, the VOC devkit) read into detectron2's dataset
dicts, every problem named by file and line. Boxes are ``[xmin - 1, ymin - 1, xmax, ymax]``
``XYXY_ABS`` pixels, as detectron2's own VOC loader reads them.
"""

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from xml.parsers import expat

from detectron2.structures import BoxMode
from PIL import Image

__all__ = [
    "FormatError",
    "VocAnnotation",
    "VocObject",
    "default_voc_image_dir",
    "image_size",
    "load_voc",
    "read_voc_xml",
    "voc_dataset_dicts",
    "voc_xml_files",
]


class FormatError(ValueError):
    """An annotation file that cannot be read, named with its line where known."""


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
    """The XML tree of ``data`` (read from ``path`` when None) and, by id, the line of every
    element (ElementTree keeps none)."""
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
    """The :class:`VocAnnotation` of one Pascal VOC XML file, from ``path`` or its bytes
    ``data``. Boxes past the image are clipped to it (marked ``clipped``); a FormatError names
    the file and line of anything malformed or missing, or of a box with no area in the image.
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


def voc_xml_files(path):
    """The annotation files of ``path``: a folder of ``.xml`` files (sorted), or a devkit
    image-set list (``VOC2007/ImageSets/Main/train.txt``, files in ``VOC2007/Annotations``).
    A FileNotFoundError when there is none, or names the list's line of a missing file."""
    path = os.fspath(path)
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.lower().endswith(".xml"))
        if not files:
            raise FileNotFoundError(f"Pascal VOC annotation folder {path!r} holds no .xml file")
        return [os.path.join(path, f) for f in files]
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pascal VOC annotations {path!r} not found (a folder of .xml "
            "files or an ImageSets/Main/*.txt list)"
        )
    devkit = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(path))))
    files = []
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            image_id = line.split()[0] if line.split() else ""
            if not image_id:
                continue
            xml_file = os.path.join(devkit, "Annotations", image_id + ".xml")
            if not os.path.isfile(xml_file):
                raise FileNotFoundError(
                    f"{path}, line {line_number}: image id {image_id!r} has no annotation file "
                    f"{xml_file}"
                )
            files.append(xml_file)
    if not files:
        raise FileNotFoundError(f"Pascal VOC image-set list {path!r} names no image")
    return files


def default_voc_image_dir(path):
    """The image folder of the VOC dataset ``path`` when not given: the devkit's
    ``JPEGImages``, else the annotation folder itself (LabelImg saves XML beside images)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(path))), "JPEGImages")
    beside = os.path.join(os.path.dirname(path), "JPEGImages")
    if os.path.basename(path) == "Annotations" and os.path.isdir(beside):
        return beside
    return path


def load_voc(path, image_dir=None):
    """``[(VocAnnotation, image path)]`` of every annotation file of ``path``, its image
    ``<filename>`` in ``image_dir``; a FormatError for a malformed file, a missing image or
    another size than the image has."""
    image_dir = default_voc_image_dir(path) if image_dir is None else os.fspath(image_dir)
    loaded = []
    for xml_file in voc_xml_files(path):
        ann = read_voc_xml(xml_file)
        image = os.path.join(image_dir, ann.filename)
        if not os.path.isfile(image):
            raise FormatError(
                f"{xml_file}: <filename> {ann.filename!r} is not an image in {image_dir} "
                f"({image} not found)"
            )
        size = image_size(image)
        if size not in ((ann.width, ann.height), (ann.height, ann.width)):
            raise FormatError(
                f"{xml_file}: <size> says {ann.width} x {ann.height} px, but {image} is "
                f"{size[0]} x {size[1]} px"
            )
        loaded.append((ann, image))
    return loaded


# How a complete JPEG and PNG end; other files, and these when they end otherwise, are decoded.
_FILE_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _ends_with(path, end):
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - len(end), 0))
        return f.read() == end


def image_size(path):
    """(width, height) of the image file ``path`` as detectron2 reads it (EXIF orientation
    applied); decoded unless it ends as a complete JPEG or PNG, so that a FormatError names a
    truncated or corrupt file here rather than the data loader, hours later."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
            end = _FILE_ENDS.get(image.format)
            if end is None or not _ends_with(path, end):
                image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise FormatError(f"{path}: not a readable image ({e})") from None
    # EXIF orientations 5-8 turn the image by 90 degrees; detectron2's read_image applies them.
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return width, height


def voc_dataset_dicts(loaded, class_names):
    """detectron2 dataset dicts of :func:`load_voc`'s ``loaded``, category ids by
    ``class_names``; ``difficult`` objects are ordinary boxes, as in detectron2's VOC loader."""
    index = {name: k for k, name in enumerate(class_names)}
    return [
        {
            "file_name": image,
            "image_id": image_id,
            "height": ann.height,
            "width": ann.width,
            "annotations": [
                {"bbox": list(o.box), "bbox_mode": BoxMode.XYXY_ABS, "category_id": index[o.name]}
                for o in ann.objects
            ],
        }
        for image_id, (ann, image) in enumerate(loaded)
    ]
