"""The Open Inference Protocol (KServe v2 / Triton REST) beside the service's own API.

``routes`` holds the /v2 endpoints; ``messages`` parses inference requests and writes
responses (JSON, or JSON with Triton's binary tensor data); ``tensors`` converts one tensor
between its JSON or binary form and numpy; ``models`` holds the two models the protocol
serves over the live version (the classifier on face crops, and the whole pipeline on
encoded images).
"""
