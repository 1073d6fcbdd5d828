"""Checkpoint loading that fails clearly instead of evaluating a half-loaded model."""

from detectron2.checkpoint import DetectionCheckpointer


class DWCheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer, plus:

    - a file that cannot be read (truncated, not a checkpoint) raises an error naming it;
    - with ``strict=True``, a checkpoint that leaves any model weight missing raises an error
      listing the missing names (e.g. a no-refine checkpoint for a refine config). Use it for
      evaluation; training from ImageNet weights legitimately misses the head.
    """

    def __init__(self, model, save_dir="", *, strict=False, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict = strict

    def _load_file(self, filename):
        try:
            return super()._load_file(filename)
        except Exception as e:
            raise RuntimeError(
                f"Cannot read the checkpoint {filename!r}: it is truncated or not a "
                f"checkpoint ({type(e).__name__}: {e})"
            ) from e

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        if self.strict and incompatible.missing_keys:
            missing = sorted(incompatible.missing_keys)
            shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise KeyError(
                f"The checkpoint does not fit this model: {len(missing)} model weights are "
                f"missing from it ({shown}). Is it for another config (box refine, DCN, depth)?"
            )
        return incompatible
