"""The run's log for this package's messages."""

from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

__all__ = ["setup_dw_logger"]


def setup_dw_logger(output_dir):
    """Send the ``dual_weighting`` loggers' messages where detectron2's ``default_setup`` sends
    its own (the terminal, ``output_dir/log.txt``; other workers to ``log.txt.rank<N>``): it sets
    up only the ``detectron2`` and ``fvcore`` loggers, so the data's notes (boxes clipped, label
    files without an image, background images) would reach no log."""
    setup_logger(
        output_dir, distributed_rank=comm.get_rank(), name="dual_weighting", abbrev_name="dw"
    )
