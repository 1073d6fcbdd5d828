"""Pictures of detections: predictions next to ground truth, with detectron2's Visualizer."""

import numpy as np
from detectron2.data import detection_utils
from detectron2.utils.visualizer import Visualizer


def predictions_beside_ground_truth(dataset_dicts, predictor, metadata, score_thresh=0.3):
    """(H, W, 3) uint8 RGB picture, one row per record of ``dataset_dicts`` (``file_name``,
    ``annotations``): ground truth on the left, the detections of ``predictor`` (a
    ``DefaultPredictor``, BGR input) above ``score_thresh`` on the right, named by ``metadata``."""
    rows = []
    for record in dataset_dicts:
        rgb = detection_utils.read_image(record["file_name"], format="RGB")
        # Boxes only: filled masks would recolour the shapes and hide what the model saw. Crowd
        # regions are not objects to find (COCOeval ignores detections on them).
        boxes_only = dict(
            record,
            annotations=[
                {k: v for k, v in a.items() if k != "segmentation"}
                for a in record["annotations"]
                if not a.get("iscrowd", 0)
            ],
        )
        truth = Visualizer(rgb, metadata).draw_dataset_dict(boxes_only).get_image()
        instances = predictor(rgb[:, :, ::-1])["instances"].to("cpu")
        instances = instances[instances.scores > score_thresh]
        predicted = Visualizer(rgb, metadata).draw_instance_predictions(instances).get_image()
        gap = np.full((truth.shape[0], 8, 3), 255, dtype=np.uint8)
        rows.append(np.concatenate([truth, gap, predicted], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)
