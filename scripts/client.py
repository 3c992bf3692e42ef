"""A small client for other apps: send a photo, print each face's emotion.

python scripts/client.py photo.jpg [--url http://localhost:8000] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import sys
import time

import requests


def predict(url: str, path: str, api_key: str | None = None, retries: int = 5, **options) -> dict:
    """POST one image; wait and retry while the service answers 503 (model loading)."""
    headers = {"X-API-Key": api_key} if api_key else {}
    for attempt in range(retries):
        with open(path, "rb") as f:
            r = requests.post(
                f"{url}/predict", files={"image": f}, data=options, headers=headers, timeout=30
            )
        if r.status_code == 503 and attempt < retries - 1:
            time.sleep(float(r.headers.get("Retry-After", "2")))
            continue
        if r.status_code != 200:
            err = r.json().get("error", {})
            raise RuntimeError(
                f"{r.status_code} {err.get('code')}: {err.get('message')} "
                f"(request {r.headers.get('X-Request-ID')})"
            )
        return r.json()
    raise RuntimeError("service not ready")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("image")
    p.add_argument("--url", default="http://localhost:8000")
    p.add_argument("--api-key")
    args = p.parse_args()
    try:
        result = predict(args.url, args.image, args.api_key, top_k=3)
    except (RuntimeError, requests.RequestException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(
        f"{result['width']}x{result['height']}, model {result['model']['name']} "
        f"v{result['model']['version']}, {len(result['faces'])} face(s)"
    )
    for i, face in enumerate(result["faces"], 1):
        b = face["box"]
        top = ", ".join(f"{t['emotion']} {t['probability']:.2f}" for t in face["top"])
        print(f"  face {i} at ({b['x']},{b['y']}) {b['width']}x{b['height']}: {top}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
