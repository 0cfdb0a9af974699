"""The job layer: webhook events are recorded here and turned into background work."""
