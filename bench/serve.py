"""Served throughput and latency under load, beside the in-process pipeline, in one run.

Starts gunicorn on 127.0.0.1 (scripts/serve.sh, bundled model) for each configuration,
drives it with bench/loadgen at each concurrency for a fixed time, and prints
requests/s, p50/p95/p99 latency, errors, and each worker's memory before and after. The
in-process pipeline (bench/pipeline) is measured on the same images in the same run, so
the ratios compare like with like on a noisy machine.

    python -m bench.serve                              # defaults below
    python -m bench.serve --configs 2x4:batch,2x4:nobatch --concurrency 1,16,64
    python -m bench.serve --soak 20000                 # memory over 20,000 requests

A configuration is WORKERSxTHREADS[:batch][:notta][:gthread][:tf][:ovN]: WORKERSx1 runs
gunicorn's sync workers (one request per worker at a time) unless :gthread says otherwise,
more threads the gthread class; batch turns dynamic batching on (gthread only); tf serves
with FER_RUNTIME=tensorflow (default: the service's auto, OpenVINO on a CPU); ovN gives
each worker N OpenVINO threads (default: the cores / workers). The time from starting
gunicorn until every worker has loaded and warmed its model is printed per configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import tempfile
import time
from pathlib import Path

from bench.images import SETS
from bench.loadgen import Load, summary
from bench.machine import header
from bench.pipeline import make_analyzer, measure
from bench.server import serve, worker_pids


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def parse_config(text: str) -> dict:
    parts = text.split(":")
    workers, threads = (int(x) for x in parts[0].split("x"))
    ov = [int(p[2:]) for p in parts[1:] if p.startswith("ov") and p[2:].isdigit()]
    return {
        "runtime": "tensorflow" if "tf" in parts[1:] else "auto",
        "inference_threads": ov[0] if ov else 0,
        "workers": workers,
        "threads": threads,
        "batch": "batch" in parts[1:],
        "tta": "notta" not in parts[1:],
        "worker_class": "gthread" if threads > 1 or "gthread" in parts[1:] else "sync",
        "name": text,
    }


@contextlib.contextmanager
def serving(cfg: dict):
    """gunicorn with one configuration; yields (url, master process)."""
    env = {
        "FER_BATCH": str(cfg["batch"]).lower(),
        "FER_FLIP_TTA": str(cfg["tta"]).lower(),
        "FER_WORKER_CLASS": cfg["worker_class"],
        "FER_RELOAD_SECONDS": "0",  # no version checks while measuring
        "FER_RUNTIME": cfg["runtime"],
        "FER_INFERENCE_THREADS": str(cfg["inference_threads"]),
    }
    t0 = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp,
        # JSON logs as deployed: serve() reads them to wait until every worker is warm.
        serve(Path(tmp), workers=cfg["workers"], threads=cfg["threads"], **env) as (url, proc, _),
    ):
        print(f"{cfg['name']}: every worker ready {time.monotonic() - t0:.1f} s after start")
        yield url, proc


def run_config(cfg, analyzer, bodies, levels, seconds, path, rounds=5):
    """Rows per concurrency level; concurrency 1 alternates with the in-process pipeline
    in short rounds, so both see the same machine (it is noisy)."""
    detect = not path.endswith("detect=false")
    with serving(cfg) as (url, proc):
        # Warm-up on the set's first image: the others' sizes are met while measured (a
        # varied set's sizes must not be seen before, as a service meets them).
        Load(url, bodies[:1], concurrency=4, duration=3, path=path).run()
        measure(analyzer, bodies[:1], detect, seconds=1)
        pids = worker_pids(proc.pid)
        rows, inproc = [], []
        for c in levels:
            before = [rss_mb(p) for p in pids]
            t0 = time.monotonic()
            if c == 1:
                calls = []
                for _ in range(rounds):
                    inproc.append(measure(analyzer, bodies, detect, seconds / rounds))
                    calls += Load(
                        url, bodies, concurrency=1, duration=seconds / rounds, path=path
                    ).run()
                elapsed = sum(call.seconds for call in calls)
            else:
                calls = Load(url, bodies, concurrency=c, duration=seconds, path=path).run()
                elapsed = time.monotonic() - t0
            s = summary(calls, elapsed)
            rows.append(
                {
                    "concurrency": c,
                    **s,
                    "rss_before": before,
                    "rss_after": [rss_mb(p) for p in pids],
                }
            )
        base = {  # main() always measures concurrency 1, so inproc has its rounds
            "images_per_s": statistics.median(r["images_per_s"] for r in inproc),
            "p50_ms": statistics.median(r["p50_ms"] for r in inproc),
        }
        return rows, base


def soak(cfg: dict, bodies: list[bytes], total: int, concurrency: int, path: str) -> None:
    with serving(cfg) as (url, proc):
        Load(url, bodies, concurrency=concurrency, duration=10, path=path).run()  # warm-up
        pids = worker_pids(proc.pid)
        start = [rss_mb(p) for p in pids]
        print(f"soak {cfg['name']}: {total} requests at concurrency {concurrency}", flush=True)
        print(f"  after warm-up: RSS MB per worker {start}", flush=True)
        done, t0, errors = 0, time.monotonic(), 0
        while done < total:
            calls = Load(url, bodies, concurrency=concurrency, duration=30, path=path).run()
            done += len(calls)
            errors += sum(not c.ok for c in calls)
            now = [rss_mb(p) for p in pids]
            print(f"  {done:6d} requests, {errors} errors: RSS MB {now}", flush=True)
        growth = [round((b - a) / a * 100, 2) for a, b in zip(start, now, strict=True)]
        print(
            f"  growth per worker over {done} requests after warm-up: {growth} % "
            f"({round(done / (time.monotonic() - t0), 1)} req/s)"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", default="2x1,2x4,2x4:batch,1x8:batch")
    p.add_argument("--concurrency", default="1,4,16,64")
    p.add_argument("--seconds", type=float, default=15.0, help="per concurrency level")
    p.add_argument("--set", default="single", choices=sorted(SETS))
    p.add_argument("--soak", type=int, default=0, help="instead: memory over N requests")
    p.add_argument("--soak-concurrency", type=int, default=16)
    args = p.parse_args()
    bodies = SETS[args.set]()
    path = "/predict?detect=false" if args.set == "crops" else "/predict"
    configs = [parse_config(c) for c in args.configs.split(",")]
    if args.soak:
        soak(configs[0], bodies, args.soak, args.soak_concurrency, path)
        return
    levels = [int(c) for c in args.concurrency.split(",")]
    if 1 not in levels:
        levels = [1, *levels]  # the in-process comparison runs beside concurrency 1
    print(header())
    head = f"{'config':16} {'conc':>4} {'req/s':>7} {'x inproc':>8} {'p50':>7} {'p90':>7} "
    for cfg in configs:
        runtime = None if cfg["runtime"] == "auto" else cfg["runtime"]
        analyzer = make_analyzer(
            flip_tta=cfg["tta"], runtime=runtime, threads=cfg["inference_threads"]
        )
        m, det = analyzer.models.current(), analyzer.detector
        what = f"{m.runtime} {m.precision}, detector {det.runtime} {det.precision}"
        rows, base = run_config(cfg, analyzer, bodies, levels, args.seconds, path)
        del analyzer, m, det
        gc.collect()
        print(f"\n{cfg['name']}: {what}")
        print(
            f"{cfg['name']}: in-process pipeline ({args.set}, one caller, alternating with "
            f"concurrency 1): {base['images_per_s']:.2f} images/s, p50 {base['p50_ms']:.1f} ms",
            flush=True,
        )
        print(head + f"{'p99':>7} {'p50/inproc':>10}  errors  RSS MB before -> after", flush=True)
        for r in rows:
            print(
                f"{cfg['name']:16} {r['concurrency']:>4} {r['rps']:>7} "
                f"{r['rps'] / base['images_per_s']:>8.2f} {r['p50_ms']:>7} {r['p90_ms']:>7} "
                f"{r['p99_ms']:>7} {r['p50_ms'] / base['p50_ms']:>10.2f}  "
                f"{sum(r['errors'].values()) or '-':>6}  {r['rss_before']} -> {r['rss_after']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
