"""The review page's computing core: pure functions from a Label Studio JSON export (plus the project's
ontology) to label statistics, pre-label acceptance, suspicious annotations, an embedding map, a routing
curve, one JSON-able report and its self-contained HTML page.

Only `backend.core` and `backend.labelstudio` are imported from the project; anything that needs a model
(image loading, crop features) comes in as a callable parameter. Boxes are float pixel xyxy of the image as
Label Studio shows it; percent coordinates are read only through `backend.labelstudio.results`.
"""
