"""File formats: images in, COCO files read, checked and written."""
