"""Builders shared by several test modules (not tests themselves): paths, configs and models,
inputs, exported models, Pascal VOC files, the train_net runner and the runner of the NaN-offset
check (nan_offset_check.py). Plain functions and constants, so that parametrize lists, spawned
workers and subprocesses can use them too; the fixtures are in conftest.py, the literal DW
reference and its random cases in dw_reference.py.
"""

import functools
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.layers import ShapeSpec
from detectron2.modeling import Backbone, build_model
from detectron2.structures import Boxes, Instances
from PIL import Image
from torch import nn

from dual_weighting import DWCriterion
from dual_weighting.engine import load_yacs_config
from dual_weighting.export import (
    OnnxRuntimeDetector,
    export_onnx,
    export_torchscript,
    load_torchscript,
)
from dual_weighting.modeling.assignment import decode_ltrb

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# The DW-FCOS model configs (configs/COCO-Detection/ holds DW in detectron2's own detectors).
YAMLS = sorted(p for p in CONFIGS.glob("*.yaml") if not p.name.startswith("Base-"))
DEMO_CONFIG = CONFIGS / "dw_R_18_FPN_synthetic_demo.yaml"

NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
CUDA_PARAM = pytest.param("cuda", marks=NEEDS_CUDA)

LOSS_NAMES = ("loss_cls_pos", "loss_loc", "loss_cls_neg")

# IoU of (0, 0, 320, 320) and (0, 0, 320, 192) is 320 * 192 / (320 * 320) = 0.6 exactly: a tie
# at NMS threshold 0.6, which the release's float32 rule keeps and torchvision's drops.
NMS_TIE = torch.tensor([[0.0, 0.0, 320.0, 320.0], [0.0, 0.0, 320.0, 192.0]])


# ---------------------------------------------------------------------------------------------
# Configs and models
# ---------------------------------------------------------------------------------------------


def load_cfg(path, *opts):
    """The package's ``load_yacs_config`` of the yacs file ``path``, on the CPU without weights,
    then the ``KEY VALUE`` overrides ``opts``; unfrozen, for the tests to change."""
    cfg = load_yacs_config(str(path), ["MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", *opts])
    cfg.defrost()
    return cfg


# The depth, DCN stages, head options and norms of each config; only widths and classes shrink.
# 64 FPN channels: GroupNorm(32) needs more than one value per group on a 1 x 1 P7.
THIN = [
    "MODEL.WEIGHTS", "", "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.RESNETS.STEM_OUT_CHANNELS", "16",
    "MODEL.DW.NUM_CLASSES", "3",
]  # fmt: skip
THIN_BOTTLENECK = ["MODEL.RESNETS.RES2_OUT_CHANNELS", "32", "MODEL.RESNETS.WIDTH_PER_GROUP", "8"]


def thin_cfg(path, *opts):
    """:func:`load_cfg` of ``path`` made thin (:data:`THIN`, and :data:`THIN_BOTTLENECK` for the
    bottleneck ResNets), then ``opts``: every config's model in seconds on a CPU."""
    cfg = load_cfg(path)
    cfg.merge_from_list(THIN + (THIN_BOTTLENECK if cfg.MODEL.RESNETS.DEPTH >= 50 else []))
    cfg.merge_from_list(list(opts))
    return cfg


def assert_same_architecture(a, b):
    """The two models have the same modules (names and types) and the same parameters (names,
    shapes, trainability): a yacs config and its LazyConfig twin built the same model."""
    assert [(n, type(m)) for n, m in a.named_modules()] == [
        (n, type(m)) for n, m in b.named_modules()
    ]
    assert {n: (p.shape, p.requires_grad) for n, p in a.named_parameters()} == {
        n: (p.shape, p.requires_grad) for n, p in b.named_parameters()
    }


def thin_model(path, device="cpu"):
    """The model of :func:`thin_cfg` on ``device``, initialised with seed 0."""
    cfg = thin_cfg(path, "MODEL.DEVICE", device)
    torch.manual_seed(0)
    return build_model(cfg)


# The demo model (ResNet-18, two-conv towers) at 64 FPN channels and 2 classes, trained on 96 px.
SMALL_MODEL = [
    "MODEL.FPN.OUT_CHANNELS", "64", "MODEL.DW.NUM_CLASSES", "2",
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "160",
]  # fmt: skip


def small_cfg(*opts):
    """The demo config made small (:data:`SMALL_MODEL`), then ``opts``."""
    return load_cfg(DEMO_CONFIG, *SMALL_MODEL, *opts)


def resnet_fpn_cfg(depth=18, deform=(False, False, False, False), freeze_at=0, norm="BN"):
    """detectron2's defaults with DW's ResNet-FPN backbone alone (P3-P7 of 32 channels from
    res3-res5, DCNv2 on the stages ``deform``), the stride in the 3x3 conv as torchvision's."""
    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_dw_resnet_fpn_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = freeze_at
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.NORM = norm
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth in (18, 34) else 256
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.RESNETS.DEFORM_ON_PER_STAGE = list(deform)
    cfg.MODEL.RESNETS.DEFORM_MODULATED = True
    cfg.MODEL.FPN.IN_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    return cfg


class RecordingCheckpointer(DetectionCheckpointer):
    """Keeps the incompatible keys (``.incompatible``) that ``load`` only logs."""

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible


class TwoLevels(Backbone):
    """Levels "p3" (stride 8) and "p4" (stride 16) from average-pooled pixels and a 3x3 conv:
    the backbone of the small detectors trained in tests."""

    def __init__(self, channels=32):
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        self.channels = channels

    def forward(self, x):
        return {
            "p3": self.conv(nn.functional.avg_pool2d(x, 8)),
            "p4": self.conv(nn.functional.avg_pool2d(x, 16)),
        }

    def output_shape(self):
        return {k: ShapeSpec(channels=self.channels, stride=s) for k, s in (("p3", 8), ("p4", 16))}

    @property
    def size_divisibility(self):
        return 16


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

SIZES = [(64, 80), (64, 79)]  # one odd width, as detectron2's (200, 250), (200, 249)


def images(sizes=SIZES):
    """Random float images (3, H, W) in [0, 255] of ``sizes``, the same on every call."""
    g = torch.Generator().manual_seed(1)
    return [torch.rand(3, h, w, generator=g) * 255 for h, w in sizes]


def instances(size, num_boxes):
    """Ground truth of an image of ``size``: the first ``num_boxes`` (0 to 2) of two boxes of
    classes 0 and 2."""
    inst = Instances(size)
    inst.gt_boxes = Boxes(torch.tensor([[4.0, 6, 40, 50], [20, 10, 60, 60]])[:num_boxes])
    inst.gt_classes = torch.tensor([0, 2])[:num_boxes]
    return inst


def two_box_batch():
    """One 96 x 128 image with two overlapping boxes of classes 0 and 1."""
    inst = Instances((96, 128))
    inst.gt_boxes = Boxes(torch.tensor([[10.0, 10, 60, 50], [40, 30, 120, 90]]))
    inst.gt_classes = torch.tensor([0, 1])
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.rand(3, 96, 128, generator=g) * 255, "instances": inst}]


# ---------------------------------------------------------------------------------------------
# Exported models (the fixture conftest.exported exports them once a session)
# ---------------------------------------------------------------------------------------------

# The demo model as configured; the R-50 configs thinned (thin_cfg).
EXPORT_MODELS = {
    "demo": DEMO_CONFIG,
    "R50": CONFIGS / "dw_R_50_FPN_1x.yaml",
    "R50_refine": CONFIGS / "dw_R_50_FPN_refine_1x.yaml",
    "R50_DCN_refine": CONFIGS / "dw_R_50_FPN_DCN_refine_ms_2x.yaml",
}
TRACE_SIZE = (192, 256)


def export_cfg(path, *opts):
    """The config of :data:`EXPORT_MODELS`' ``path``: the demo's as it is, the others thinned."""
    return load_cfg(path, *opts) if path == DEMO_CONFIG else thin_cfg(path, *opts)


def random_export_model(path):
    """The model of :func:`export_cfg` in eval mode, initialised with seed 0, with the prediction
    layers drawn wider (std 0.1) so that scores spread, and the DCN offsets drawn (std 0.01) so
    that deformable reads land between cells, as in a trained model."""
    torch.manual_seed(0)
    model = build_model(export_cfg(path)).eval()
    with torch.no_grad():
        head = model.head
        for conv in (head.cls_logits, head.centerness, head.box, head.box_refine_offsets):
            if conv is not None:
                conv.weight.normal_(std=0.1)
        # DCN offsets start at zero (a regular grid); make them read between cells.
        for name, param in model.named_parameters():
            if "offset" in name and name.endswith("weight") and "refine" not in name:
                param.normal_(std=0.01)
    return model


def noise_image(size, seed):
    """A float image (3, H, W) of uniform noise in [0, 255] of ``size``, from ``seed``."""
    return torch.rand(3, *size, generator=torch.Generator().manual_seed(seed)) * 255


def export_to(model, fmt, folder):
    """``model`` exported to ``fmt`` ("torchscript" or "onnx") in ``folder`` (model.ts or
    model.onnx), traced on a :data:`TRACE_SIZE` image: the loaded export (TorchScriptDetector or
    OnnxRuntimeDetector) and the warnings exporting raised."""
    sample = noise_image(TRACE_SIZE, seed=0)
    with warnings.catch_warnings(record=True) as raised:
        warnings.simplefilter("always")
        if fmt == "torchscript":
            export_torchscript(model, sample, folder / "model.ts")
        else:
            export_onnx(model, sample, folder / "model.onnx")
    if fmt == "torchscript":
        return load_torchscript(folder / "model.ts"), raised
    return OnnxRuntimeDetector(folder / "model.onnx", threads=1), raised


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def fcos_dw_losses(points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes, **hp):
    """:class:`DWCriterion`'s losses (hyper-parameters ``hp``, the release's by default) of
    FCOS-style predictions: distances ``box_ltrb`` (N, P, 4) from the points, decoded to boxes as
    DWFCOS decodes them."""
    pred_boxes = decode_ltrb(points.to(box_ltrb), box_ltrb)
    return DWCriterion(**hp)(
        points, strides, cls_logits, ctr_logits, pred_boxes, gt_boxes, gt_classes
    )


def losses_and_grads(fn, points, strides, cls_logits, ctr_logits, box_ltrb, gt_boxes, gt_classes):
    """The three losses of ``fn`` (in :data:`LOSS_NAMES` order) and, per loss, its gradients with
    respect to the class logits, centerness logits and distances (zeros where it has none)."""
    inputs = [t.detach().clone().requires_grad_() for t in (cls_logits, ctr_logits, box_ltrb)]
    losses = fn(points, strides, *inputs, gt_boxes, gt_classes)
    values = [losses[k] for k in LOSS_NAMES]
    grads = {}
    for k, value in zip(LOSS_NAMES, values):
        grads[k] = torch.autograd.grad(value, inputs, retain_graph=True, allow_unused=True)
        grads[k] = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(inputs, grads[k])]
    return values, grads


# ---------------------------------------------------------------------------------------------
# Batched inference against one image at a time, in float64
# ---------------------------------------------------------------------------------------------

# Image 0 fills the batch (160 x 128 after padding to 32); 1 and 2 are padded further.
MIXED_SIZES = [(130, 97), (64, 80), (96, 33)]


def float64_images(sizes=MIXED_SIZES):
    g = torch.Generator().manual_seed(3)
    return [torch.rand(3, h, w, generator=g, dtype=torch.float64) * 255 for h, w in sizes]


def perturbed(model):
    """``model`` in float64, eval mode, every parameter moved by N(0, 0.05)."""
    model = model.double().eval()
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)
    model.test_score_thresh = 0.0
    return model


def raw_predictions(model, inputs):
    """The head's outputs of ``model`` on ``inputs``, as ``DWFCOS.forward`` computes them."""
    return model.dense_predictions(model.preprocess_image(inputs))[1]


def largest_relative_difference(model, images):
    """Over the three outputs, every level and every image: the largest difference between the
    batch's prediction in the image's own cells and the image's prediction alone, relative to
    the largest prediction alone."""
    with torch.no_grad():
        batch = raw_predictions(model, [{"image": x} for x in images])
        worst = 0.0
        for i, image in enumerate(images):
            alone = raw_predictions(model, [{"image": image}])
            for batch_maps, alone_maps in zip(batch, alone):
                for b, a in zip(batch_maps, alone_maps):
                    h, w = a.shape[-2:]
                    diff = (b[i, :, :h, :w] - a[0]).abs().max() / a.abs().max()
                    worst = max(worst, float(diff))
    return worst


# ---------------------------------------------------------------------------------------------
# Numbers in printed tables
# ---------------------------------------------------------------------------------------------


class PrintedNumber(float):
    """A number as a table printed it: equal to every number that rounds to it ("2.6" equals
    2.6458, "7.50e-08" equals 7.5e-8), so that tests state true values, not formats."""

    def __new__(cls, text):
        self = super().__new__(cls, text)
        mantissa, _, exponent = text.lower().partition("e")
        decimals = len(mantissa.partition(".")[2])
        self.tolerance = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
        self.text = text
        return self

    def __eq__(self, other):
        if isinstance(other, (int, float)):
            return abs(float(self) - float(other)) <= self.tolerance * (1 + 1e-9)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return f"printed {self.text}"


# Not inside a word ("fp32", "(d2)") nor after a digit ("10.0-30.0" is 10.0 and 30.0).
_NUMBER = re.compile(r"(?<![\w.])[+-]?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def printed_numbers(text):
    """The numbers printed in ``text``, in order, as :class:`PrintedNumber`; words, "n/a" and
    "-" are left out ("1.100x" is 1.1, "20.0 ± 10.0" is 20.0 and 10.0)."""
    return [PrintedNumber(m) for m in _NUMBER.findall(text)]


def table_line(text, *words):
    """The one line of ``text`` whose first words are ``words`` (a table row by its label)."""
    (line,) = [line for line in text.splitlines() if line.split()[: len(words)] == list(words)]
    return line


# ---------------------------------------------------------------------------------------------
# Pascal VOC files: each <object> on a line of its own (line 3 for the first), so that messages
# naming file and line can be checked
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# train_net.py in a subprocess
# ---------------------------------------------------------------------------------------------


def registrations(dataset):
    """train_net.py's ``--register-coco`` of the generated ``dataset``'s splits as t_train and
    t_val."""
    return [
        "--register-coco", f"t_train={dataset}/annotations/instances_train.json:{dataset}/train",
        "--register-coco", f"t_val={dataset}/annotations/instances_val.json:{dataset}/val",
    ]  # fmt: skip


def train_net_args(dataset, output_dir, *extra_opts, max_iter=4):
    """train_net.py's arguments for a tiny ResNet-18-FPN (32 channels) on 128-pixel images of the
    generated ``dataset`` (conftest's ``shapes_dataset``), registered as t_train and t_val."""
    return [
        *registrations(dataset), "--config-file", str(DEMO_CONFIG),
        "DATASETS.TRAIN", '("t_train",)', "DATASETS.TEST", '("t_val",)',
        "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", str(max_iter),
        "SOLVER.BASE_LR", "0.02", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "()",
        "DATALOADER.NUM_WORKERS", "0", "SEED", "7",
        "OUTPUT_DIR", str(output_dir), *extra_opts,
    ]  # fmt: skip


def run_train_net(args, check=True):
    """``python train_net.py ARGS`` from the repository root, on one thread; with ``check``, an
    AssertionError with the end of its output unless it exits 0."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(REPO / "train_net.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net.py failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def read_metrics(output_dir):
    """The records of detectron2's metrics.json in ``output_dir``."""
    return [json.loads(line) for line in (output_dir / "metrics.json").read_text().splitlines()]


# ---------------------------------------------------------------------------------------------
# NaN offsets, checked in a subprocess
# ---------------------------------------------------------------------------------------------


@functools.cache
def run_nan_offset_check():
    """Run ``nan_offset_check.py`` in a fresh Python process, once a session
    (engine/test_robustness.py checks its result; modeling/test_model_e2e.py runs it before its
    non-finite cases): torchvision's CPU deform_conv2d segfaults on a NaN offset (0.29), so a
    regression there fails a test, not the suite."""
    code = "import nan_offset_check; nan_offset_check.main()"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
        env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"),
        timeout=300,
    )
