"""Input and output: images in, COCO and label images out."""
