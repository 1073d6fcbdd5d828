"""The run's log for this package's messages."""

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

__all__ = ["setup_dw_logger"]


def setup_dw_logger(output_dir):
    """Send the ``dual_weighting`` loggers' messages where detectron2's ``default_setup`` sends
    its own, which it does not (the data's notes would reach no log)."""
    setup_logger(
        output_dir, distributed_rank=comm.get_rank(), name="dual_weighting", abbrev_name="dw"
    )
