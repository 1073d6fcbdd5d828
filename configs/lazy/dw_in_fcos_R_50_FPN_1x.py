"""DW inside detectron2's own FCOS config: ``COCO-Detection/fcos_R_50_FPN_1x.py`` of detectron2's
model zoo with its model made DW-FCOS, and nothing else changed.

Kept from detectron2's config: the backbone (MSRA R-50-FPN, P6/P7 from P5, FrozenBN, BGR input),
its init checkpoint, the data (multi-scale 640-800 training), SGD at lr 0.01, the 90k-iteration
1x schedule and the training options. What DW needs instead: the meta-architecture (DW's
weighting of positives and negatives, the release's inference rules) and its head, which scales
distances by each level's stride and so is given the strides. The test score threshold is DW's
default 0.05 (detectron2's FCOS uses 0.2 on sqrt(cls * ctr); DW thresholds cls * ctr).
"""

from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec

from dual_weighting import DWFCOS, DWCriterion, DWHead
from dual_weighting.engine.lazy import model_zoo

# Underscored: LazyConfig.load leaves it out of the config.
_fcos = model_zoo.get_config("COCO-Detection/fcos_R_50_FPN_1x.py")
dataloader = _fcos.dataloader
optimizer = _fcos.optimizer
lr_multiplier = _fcos.lr_multiplier
train = _fcos.train

model = L(DWFCOS)(
    backbone=_fcos.model.backbone,
    head=L(DWHead)(
        # The levels p3-p7 of head_in_features; the channels follow model.backbone.out_channels.
        input_shape=[
            ShapeSpec(channels="${....backbone.out_channels}", stride=s)
            for s in (8, 16, 32, 64, 128)
        ],
        num_classes="${..num_classes}",
    ),
    head_in_features=_fcos.model.head_in_features,
    num_classes=_fcos.model.num_classes,
    # DW's release hyper-parameters (model.criterion.<name>=... overrides them).
    criterion=L(DWCriterion)(**DWCriterion.defaults()),
    pixel_mean=_fcos.model.pixel_mean,
    pixel_std=_fcos.model.pixel_std,
)
