"""What a project gives out, from its label state: COCO and label-image exports, the overview sheet, scores
against ground truth."""
