"""Label Studio ML backend that pre-annotates image tasks (zero-shot detection, LIME boxes, retrained detectors)."""

__version__ = "0.1.0"
