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


def voc_xml_files(path):
    """The annotation files of a Pascal VOC dataset given as ``path``.

    ``path`` is a folder of ``.xml`` files (all of those directly in it, sorted), or a VOC
    devkit image-set list (``VOC2007/ImageSets/Main/train.txt``: one image id a line, the XML
    files in ``VOC2007/Annotations/ID.xml``).

    Raises:
        FileNotFoundError: ``path`` does not exist, a folder holds no ``.xml`` file, or a listed
            id has no XML file (list file and line named).
    """
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
    """Where the images of the VOC dataset ``path`` (see :func:`voc_xml_files`) are when not
    given: ``JPEGImages`` of the devkit for an image-set list or an ``Annotations`` folder that
    has one beside it, else the annotation folder itself (LabelImg saves XML beside images)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.isfile(path):
        return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(path))), "JPEGImages")
    beside = os.path.join(os.path.dirname(path), "JPEGImages")
    if os.path.basename(path) == "Annotations" and os.path.isdir(beside):
        return beside
    return path


def load_voc(path, image_dir=None):
    """Read every annotation file of the VOC dataset ``path`` (:func:`voc_xml_files`) and find
    its image (``<filename>`` in ``image_dir``, :func:`default_voc_image_dir` when None).

    Raises:
        FormatError: an annotation file is malformed (see :func:`read_voc_xml`), names an
            image that is not in ``image_dir``, or gives another size than the image has.

    Returns:
        list[tuple[VocAnnotation, str]]: each file's annotation and its image's path.
    """
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


# How a complete file of the common formats ends: a JPEG with its End Of Image marker, a PNG with
# its IEND chunk. Other files, and these when they end otherwise, are decoded to find out.
_FILE_ENDS = {"JPEG": b"\xff\xd9", "PNG": b"IEND\xaeB`\x82"}


def _ends_with(path, end):
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(f.tell() - len(end), 0))
        return f.read() == end


def image_size(path):
    """(width, height) of the image file ``path`` as detectron2 reads it (EXIF orientation
    applied), from its header; the image is decoded only when its file does not end as a
    complete JPEG or PNG does, so that a truncated file is found here rather than by the data
    loader, hours later and without its name.

    Raises:
        FormatError: the file is not an image, or is truncated or corrupt (the file named).
    """
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
    """detectron2 dataset dicts of :func:`load_voc`'s ``loaded``, with category ids the
    positions of the objects' names in ``class_names``. VOC's ``difficult`` objects are ordinary
    boxes, as detectron2's own VOC loader trains on them."""
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
