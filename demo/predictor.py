"""Detections of a DW-FCOS model drawn on images and video frames, for ``demo/demo.py``
(detectron2's layout: ``demo/predictor.py`` beside ``demo/demo.py``, outside the package).

:class:`DetectionDemo` pairs detectron2's ``DefaultPredictor`` (the config's test resize, the
model's inference rules) with detectron2's ``Visualizer``, labelling boxes with the class names of
the config's first test dataset; the functions around it set up the config, expand the inputs,
describe detections as text and decide where each drawing is written.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from detectron2.data import DatasetCatalog, Metadata, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.utils.video_visualizer import VideoVisualizer
from detectron2.utils.visualizer import ColorMode, Visualizer

from dual_weighting.data import saved_class_names
from dual_weighting.engine import load_tool_config
from dual_weighting.engine.dataset_checks import check_class_names

__all__ = [
    "DetectionDemo",
    "demo_cfg",
    "describe_detections",
    "expand_inputs",
    "label_names",
    "output_path",
    "video_output_path",
]


def demo_cfg(config_file, opts=(), confidence_threshold=0.5):
    """The frozen config of :func:`dual_weighting.engine.load_tool_config` with
    ``MODEL.DW.SCORE_THRESH_TEST`` set to ``confidence_threshold``: candidates below it are not
    drawn, so the model need not keep them either, and a threshold under the config's lets the
    model keep (and the picture show) more."""
    cfg = load_tool_config(config_file, opts)
    cfg.MODEL.DW.SCORE_THRESH_TEST = confidence_threshold
    cfg.freeze()
    return cfg


def label_names(weights, flagged):
    """The class names to label detections with: those saved beside the checkpoint ``weights``
    (``class_names.txt``), else those of the first of the ``flagged`` datasets; None for the
    config's first test dataset's.

    Args:
        weights: ``MODEL.WEIGHTS``.
        flagged: (dataset name, flag) of the datasets registered by the command's
            ``--register-*`` flags.

    Raises:
        SetupError: a flagged dataset's names differ from those labels (both lists shown).
    """
    for name, _ in flagged:
        DatasetCatalog.get(name)  # a COCO json's class names are known once it is loaded
    names, where = saved_class_names(weights)
    if names is None and flagged:
        names = MetadataCatalog.get(flagged[0][0]).get("thing_classes")
        where = f"those of dataset {flagged[0][0]!r}"
    if names:
        check_class_names(flagged, names, where)
    return names


def expand_inputs(patterns):
    """Files named by ``patterns`` (paths or glob patterns), in order, without repeats."""
    files = []
    for pattern in patterns:
        matches = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matches:
            raise FileNotFoundError(f"--input {pattern!r} matches no file")
        files.extend(m for m in matches if m not in files)
    return files


def output_path(output, input_path, num_inputs):
    """Where to write the picture of ``input_path``: ``output`` itself when it names a file
    (not an existing folder, with an extension), else ``output/<input name>``. Creates the
    folder.

    Raises:
        ValueError: ``output`` names a file but there are several inputs.
    """
    if not os.path.isdir(output) and os.path.splitext(output)[1]:
        if num_inputs > 1:
            raise ValueError(f"--output {output!r} names a file, but there are {num_inputs} inputs")
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        return output
    os.makedirs(output, exist_ok=True)
    return os.path.join(output, os.path.basename(input_path))


def video_output_path(output, video_input):
    """Where to write the drawn ``video_input``: ``output`` when it names a file (with an
    extension), else ``output/<input name>.mp4``. Creates the folder."""
    if os.path.isdir(output) or not os.path.splitext(output)[1]:
        os.makedirs(output, exist_ok=True)
        name = os.path.splitext(os.path.basename(video_input))[0] + ".mp4"
        return os.path.join(output, name)
    return output


def describe_detections(instances, class_names):
    """One line per detection: class, score, box (x1, y1, x2, y2) in input pixels."""
    lines = []
    for box, score, cls in zip(
        instances.pred_boxes.tensor.tolist(), instances.scores.tolist(), instances.pred_classes
    ):
        name = class_names[cls] if class_names else str(int(cls))
        lines.append(f"  {name:>12s} {score:.3f}  " + " ".join(f"{v:7.1f}" for v in box))
    return "\n".join(lines)


class DetectionDemo:
    """A config's predictor and the metadata its drawings are labelled with.

    Attributes:
        predictor: detectron2's ``DefaultPredictor`` (takes BGR images).
        metadata: ``thing_classes`` the ``class_names`` given, else the metadata of
            ``cfg.DATASETS.TEST[0]``, or empty metadata.
    """

    def __init__(self, cfg, class_names=None):
        self.predictor = DefaultPredictor(cfg)
        if class_names:
            self.metadata = Metadata(name="class_names", thing_classes=list(class_names))
        else:
            self.metadata = MetadataCatalog.get(
                cfg.DATASETS.TEST[0] if len(cfg.DATASETS.TEST) else "__unused"
            )

    @property
    def class_names(self):
        """The class names of :attr:`metadata`, or None."""
        return self.metadata.get("thing_classes")

    def run_on_image(self, bgr):
        """Detections of a (H, W, 3) uint8 BGR image (on the CPU), and the (H, W, 3) uint8 RGB
        picture with them drawn."""
        instances = self.predictor(bgr)["instances"].to("cpu")
        picture = Visualizer(bgr[:, :, ::-1], self.metadata, instance_mode=ColorMode.IMAGE)
        return instances, picture.draw_instance_predictions(instances).get_image()

    def run_on_video(self, video_input, output):
        """Draw the detections on every frame of ``video_input`` and write them as an mp4 to
        ``output`` (a file, or a folder: see :func:`video_output_path`).

        Returns:
            ``(frames, path)``: the number of frames written and the video's path.

        Raises:
            OSError: OpenCV cannot open the input or write the output.
        """
        import cv2  # only videos need OpenCV

        capture = cv2.VideoCapture(video_input)
        if not capture.isOpened():
            raise OSError(f"OpenCV cannot open the video {video_input!r}")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        output = video_output_path(output, video_input)
        writer = cv2.VideoWriter(output, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            capture.release()
            raise OSError(f"OpenCV cannot write the video {output!r} (mp4v codec)")
        visualizer = VideoVisualizer(self.metadata, instance_mode=ColorMode.IMAGE)
        frames = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                instances = self.predictor(bgr)["instances"].to("cpu")
                drawn = visualizer.draw_instance_predictions(bgr[:, :, ::-1], instances)
                writer.write(np.ascontiguousarray(drawn.get_image()[:, :, ::-1]))
                frames += 1
        finally:
            capture.release()
            writer.release()
        return frames, output
