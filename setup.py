#!/usr/bin/env python
"""Dual Weighting (DW) label assignment for FCOS, as a detectron2 extension."""

from setuptools import find_packages, setup

setup(
    name="dual_weighting",
    version="0.1.0",
    description="Dual Weighting label assignment (Li et al., CVPR 2022) for detectron2's FCOS",
    python_requires=">=3.10",
    package_dir={"": "projects/DualWeighting"},
    packages=find_packages("projects/DualWeighting"),
    # detectron2 itself is not on PyPI under its own name: see README (`make` installs it) and
    # tools/install_detectron2.py. Ranges are wide so that a user's existing torch is kept.
    install_requires=[
        "torch>=2.0",
        "torchvision>=0.15",
        "pycocotools>=2.0.2",
        # C++ drop-in for pycocotools' COCOeval, same numbers (dual_weighting.evaluation);
        # TEST.COCO_EVAL pycocotools forces pycocotools.
        "faster-coco-eval>=1.6",
        # demo/demo.py --video-input; <4.11 keeps numpy 1.x, which detectron2's metadata pins.
        "opencv-python-headless>=4.5,<4.11",
        # Backbones (dual_weighting.modeling.TimmBackbone); weights never from its hub.
        "timm>=1.0",
    ],
    extras_require={
        # dual_weighting.export and tools/export_model.py --format onnx: torch.onnx.export
        # (dynamo=True) needs onnx and onnxscript; ONNX Runtime runs DeformConv (DCNv2) from
        # 1.25. numpy<2 is detectron2's pin, repeated because pip does not see it while
        # resolving onnx's ml_dtypes (0.6 needs 2).
        "export": ["onnx>=1.16", "onnxscript>=0.5", "onnxruntime>=1.25", "numpy<2"],
    },
)
