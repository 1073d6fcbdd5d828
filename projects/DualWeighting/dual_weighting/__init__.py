"""Dual Weighting (DW) label assignment for FCOS, as a detectron2 extension. Importing it
registers its meta-architectures, head and backbone builders in detectron2's registries."""

try:
    import detectron2  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "dual_weighting needs detectron2, which is not installed in this environment. "
        "Run `make env` in the repository (it installs detectron2 from PyPI's sal-detectron2 "
        "wheel, see tools/install_detectron2.py), or build detectron2 from source: "
        "https://detectron2.readthedocs.io/en/latest/tutorials/install.html"
    ) from e

from .config import add_dw_config
from .modeling import (
    DW_HEAD_REGISTRY,
    DWFCOS,
    DWRPN,
    DWAssignment,
    DWCriterion,
    DWHead,
    DWRetinaNet,
    DWRetinaNetHead,
    NormRPNHead,
    build_dw_head,
    dw_assign,
    dw_losses,
    refine_boxes,
)

__version__ = "0.1.0"
__all__ = [
    "DWAssignment",
    "DWCriterion",
    "DWFCOS",
    "DWHead",
    "DWRPN",
    "DWRetinaNet",
    "DWRetinaNetHead",
    "DW_HEAD_REGISTRY",
    "NormRPNHead",
    "add_dw_config",
    "build_dw_head",
    "dw_assign",
    "dw_losses",
    "refine_boxes",
]
