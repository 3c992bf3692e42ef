"""Flask inference service: detect faces, classify their emotion, report metrics.

The package itself stays empty: gunicorn's master imports ``service.config`` and must not
create Prometheus metrics or load TensorFlow (the app lives in ``service.app``).
"""
