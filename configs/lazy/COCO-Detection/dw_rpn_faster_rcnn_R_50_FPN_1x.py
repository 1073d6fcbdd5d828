"""DW in the RPN of detectron2's Faster R-CNN R-50-FPN 1x: the LazyConfig twin of
configs/COCO-Detection/dw_rpn_faster_rcnn_R_50_FPN_1x.yaml, with the proposal generator made
DW-RPN and nothing else changed.

detectron2's model zoo has Faster R-CNN R-50-FPN 1x as a yacs config only
(``COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml``); its LazyConfig form is
``COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py`` without the mask branch (the yaml's
``MASK_ON: False``), as built here. Kept from detectron2: the backbone (MSRA R-50-FPN, P2-P6,
FrozenBN, BGR input), its init checkpoint, the anchors, the RPN head and proposal settings, the
ROI heads, the data (640-800 training), SGD at lr 0.02 and the 90k-iteration 1x schedule.
"""

from dual_weighting.engine.lazy import model_zoo

from ..common.models.dw_rpn import dw_rpn_like

# Underscored: LazyConfig.load leaves it out of the config.
_rcnn = model_zoo.get_config("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_1x.py")
dataloader = _rcnn.dataloader
optimizer = _rcnn.optimizer
lr_multiplier = _rcnn.lr_multiplier
train = _rcnn.train
model = _rcnn.model

# Faster R-CNN: no mask branch, no masks read.
for _key in ("mask_in_features", "mask_pooler", "mask_head"):
    model.roi_heads.pop(_key)
dataloader.train.mapper.use_instance_mask = False

# detectron2's RPN without its anchor matcher, sampling and box loss, which DW replaces.
model.proposal_generator = dw_rpn_like(model.proposal_generator)
