"""HTTP service: the Label Studio ML backend protocol in Flask, served by gunicorn."""
