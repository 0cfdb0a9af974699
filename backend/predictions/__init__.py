"""Label Studio tasks → predictions: the one code path `/predict` and background prediction jobs share
(downloads overlapped with compute, the pipeline on the device, regions and the review-priority score)."""
