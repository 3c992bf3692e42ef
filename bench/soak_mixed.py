"""Mixed traffic at saturation: good photos with one request in five an odd or bad one
drawn from the property tests' generators (bench/http_inputs), on a real gunicorn.

Checks what an operator cares about under such traffic and prints it: no 5xx, no
worker restarted, every good answer the same as when the service was idle, memory flat.

    python -m bench.soak_mixed                        # 5 minutes, 16 clients, 2x1
    python -m bench.soak_mixed --seconds 60 --clients 8 --config 2x4:batch
"""

from __future__ import annotations

import argparse
import collections
import random
import threading
import time

import requests
from hypothesis import HealthCheck, given, settings

from bench.http_inputs import odd_requests
from bench.images import SETS
from bench.serve import parse_config, rss_mb, serving
from bench.server import worker_pids

MAX_PIXELS = 40_000_000  # the service's default FER_MAX_PIXELS


def draw_pool(n: int, seed: int) -> list[dict]:
    """``n`` requests from the generators, drawn once (hypothesis is not a load tool)."""
    pool: list[dict] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(odd_requests(MAX_PIXELS))
    def collect(req):
        pool.append(req)

    collect()
    random.Random(seed).shuffle(pool)
    return pool


def answer(resp: requests.Response) -> list[tuple]:
    """What must not change between an idle and a loaded service: each face's box and
    emotion, and its probabilities to 3 decimals."""
    return [
        (
            tuple(f["box"].values()),
            f["emotion"],
            tuple(round(p, 3) for p in f["probabilities"].values()),
        )
        for f in resp.json()["faces"]
    ]


class Soak:
    def __init__(self, url: str, photos: list[bytes], pool: list[dict], bad_share: float):
        self.url, self.photos, self.pool, self.bad_share = url, photos, pool, bad_share
        self.expected = [answer(self._post_photo(requests, p)) for p in photos]
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.statuses: collections.Counter = collections.Counter()
        self.wrong: list[str] = []
        self.server_errors: list[str] = []

    def _post_photo(self, http, photo: bytes) -> requests.Response:
        return http.post(
            self.url + "/predict", data=photo, headers={"Content-Type": "image/jpeg"}, timeout=120
        )

    def client(self, seed: int) -> None:
        rng, http = random.Random(seed), requests.Session()
        while not self.stop.is_set():
            if rng.random() < self.bad_share:
                req = dict(rng.choice(self.pool))
                req["url"] = self.url + req["url"]
                try:
                    resp = http.request(timeout=120, **req)
                except Exception as e:  # noqa: BLE001 - the server may close on a bad body
                    self._count(type(e).__name__)
                    http = requests.Session()
                    continue
                self._count(f"odd {resp.status_code}")
                if resp.status_code >= 500:
                    self.server_errors.append(f"{req['url']}: {resp.text[:200]}")
                continue
            i = rng.randrange(len(self.photos))
            resp = self._post_photo(http, self.photos[i])
            self._count(f"good {resp.status_code}")
            if resp.status_code != 200 or answer(resp) != self.expected[i]:
                self.wrong.append(f"photo {i}: {resp.status_code} {resp.text[:200]}")

    def _count(self, key: str) -> None:
        with self.lock:
            self.statuses[key] += 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=300)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--config", default="2x1", help="as bench.serve's --configs, one of them")
    p.add_argument("--bad-share", type=float, default=0.2)
    p.add_argument("--pool", type=int, default=500, help="odd requests drawn before the run")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    photos = SETS["single"]() + SETS["multi"]()
    pool = draw_pool(args.pool, args.seed)
    print(f"{len(pool)} odd requests drawn; {len(photos)} photos", flush=True)
    with serving(parse_config(args.config)) as (url, proc):
        soak = Soak(url, photos, pool, args.bad_share)
        pids = worker_pids(proc.pid)
        threads = [
            threading.Thread(target=soak.client, args=(args.seed + i,), daemon=True)
            for i in range(args.clients)
        ]
        start_rss = [rss_mb(p) for p in pids]
        print(f"workers {pids}, RSS MB {start_rss}", flush=True)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        while time.monotonic() - t0 < args.seconds:
            time.sleep(min(30, args.seconds - (time.monotonic() - t0)))
            total = sum(soak.statuses.values())
            rss = [rss_mb(p) for p in pids if p in worker_pids(proc.pid)]
            print(
                f"  {time.monotonic() - t0:5.0f} s  {total:6d} requests  RSS MB {rss}", flush=True
            )
        soak.stop.set()
        for t in threads:
            t.join(timeout=130)
        end_pids = worker_pids(proc.pid)
        end_rss = [rss_mb(p) for p in pids if p in end_pids]
    total = sum(soak.statuses.values())
    print(
        f"\n{total} requests in {args.seconds:.0f} s ({total / args.seconds:.1f}/s), "
        f"{args.clients} clients, config {args.config}"
    )
    for key, n in sorted(soak.statuses.items()):
        print(f"  {key:28} {n}")
    print(f"server errors (5xx): {len(soak.server_errors)}")
    for line in soak.server_errors[:10]:
        print("   ", line)
    print(f"good answers different from the idle service's: {len(soak.wrong)}")
    for line in soak.wrong[:10]:
        print("   ", line)
    print(f"workers restarted: {'no' if end_pids == pids else f'yes ({pids} -> {end_pids})'}")
    growth = [round((b - a) / a * 100, 1) for a, b in zip(start_rss, end_rss, strict=False)]
    print(f"RSS MB per worker {start_rss} -> {end_rss} ({growth} %)")


if __name__ == "__main__":
    main()
