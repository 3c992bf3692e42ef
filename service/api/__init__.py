"""The HTTP edge of the service's own API: where a request becomes a call and an answer.

``routes`` holds the endpoints (/predict, /predict/batch, /health, /ready, /metrics,
/openapi.yaml); ``uploads`` reads image bytes and raw options out of a request, whatever
way they came; ``schemas`` validates the options; ``serialize`` writes the analyses as
openapi.yaml has them; ``hooks`` is the per-request plumbing (request id, API key,
metrics, access log); ``web`` serves the browser page and ``docs`` the interactive API
documentation at /docs. Nothing here touches a network or an image's pixels: that is
``service.analyzer``'s work, behind ``service.state``.
"""
