"""Pascal VOC files written for the tests: one ``<annotation>`` per image, each ``<object>`` on a
line of its own (line 3 for the first), so that messages naming file and line can be checked."""

from PIL import Image


def voc_xml(filename, width, height, objects):
    """The XML of an image ``filename`` of ``width`` x ``height`` pixels holding ``objects``,
    (name, (xmin, ymin, xmax, ymax)) pairs in VOC's 1-based pixel corners."""
    lines = [
        f"<annotation><filename>{filename}</filename>",
        f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
        *(
            f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for name, (x0, y0, x1, y1) in objects
        ),
        "</annotation>",
    ]
    return "\n".join(lines) + "\n"


def write_voc(folder, images, size=(40, 30), box=(3, 2, 20, 9)):
    """A VOC folder (each XML beside its black PNG image of ``size`` (width, height)) of
    ``images``: image stem -> the names of its objects, each with ``box``. Returns the folder."""
    folder.mkdir(parents=True)
    for stem, names in images.items():
        Image.new("RGB", size).save(folder / f"{stem}.png")
        xml = voc_xml(f"{stem}.png", *size, [(name, box) for name in names])
        (folder / f"{stem}.xml").write_text(xml)
    return folder
