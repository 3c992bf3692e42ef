"""Video analysis: emotions over time, per person (POST /predict/video and the CLI,
``python -m service.video``)."""
