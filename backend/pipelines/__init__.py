"""Pipelines: compose adapters into `Ontology + images → list[Detections]`."""
