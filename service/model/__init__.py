"""The model side of the service: a version folder in, class probabilities out.

``contract`` reads a version folder's two JSON files (the only thing the service shares
with the trainer); ``repository`` finds versions under ``models/<name>/``; ``registry``
holds a worker's live version and replaces it without downtime; ``classifier`` is the
protocol every runtime implements and what they share (flip TTA, calibration);
``runtime`` picks OpenVINO (``openvino_runtime``) or TensorFlow (``tf_runtime``);
``calibration`` applies the version's temperature; ``batching`` lets concurrent requests
share one model call; ``memory`` hands a load's freed heap back to the system.

Importing the package loads no runtime: each is imported when chosen.
"""
