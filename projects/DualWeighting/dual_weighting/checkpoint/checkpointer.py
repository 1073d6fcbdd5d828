"""Checkpoint loading that fails clearly instead of evaluating a half-loaded model."""

from detectron2.checkpoint import DetectionCheckpointer


class DWCheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer; a file that cannot be read raises an error naming it,
    and with ``strict=True`` (for evaluation) so do tensors of other shapes (naming another
    class count) and missing model weights."""

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
        if self.strict and incompatible.incorrect_shapes:
            raise KeyError(_shape_mismatch_message(incompatible.incorrect_shapes))
        if self.strict and incompatible.missing_keys:
            missing = sorted(incompatible.missing_keys)
            shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
            raise KeyError(
                f"The checkpoint does not fit this model: {len(missing)} model weights are "
                f"missing from it ({shown}). Is it for another config (box refine, DCN, depth)?"
            )
        return incompatible


# The last layer of each head that predicts classes: its output count follows the class count.
_CLASSIFIERS = ("cls_logits.weight", "cls_score.weight")


def _shape_mismatch_message(incorrect_shapes):
    """The message on tensors of other shapes, naming the class-count keys for a classifier."""
    listed = ", ".join(
        f"{k} {tuple(a)} in the checkpoint, {tuple(b)} in the model"
        for k, a, b in incorrect_shapes[:5]
    )
    more = f" and {len(incorrect_shapes) - 5} more" if len(incorrect_shapes) > 5 else ""
    # Another width changes a classifier's input channels too; another class count its outputs.
    classifiers = [
        (key, a, b) for key, a, b in incorrect_shapes if key.endswith(_CLASSIFIERS) and a[0] != b[0]
    ]
    if classifiers:
        key, in_checkpoint, in_model = classifiers[0]
        return (
            f"The checkpoint was trained for another number of classes: its classifier {key} "
            f"has {in_checkpoint[0]} outputs, this model's {in_model[0]}. Set the model's class "
            "count to the checkpoint's (yacs: MODEL.DW.NUM_CLASSES for DWFCOS, "
            "MODEL.FCOS.NUM_CLASSES, MODEL.RETINANET.NUM_CLASSES or MODEL.ROI_HEADS.NUM_CLASSES "
            "for the others; LazyConfig: model.num_classes or model.roi_heads.num_classes), or "
            f"use the checkpoint trained for this dataset. Tensors of other shapes: {listed}{more}."
        )
    return (
        f"The checkpoint does not fit this model: tensors of other shapes: {listed}{more}. Is it "
        "for another config (widths, depth, head convs)?"
    )
