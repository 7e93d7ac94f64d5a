"""Faces through `edge-sdk serve` (Triton) against `Recognizer.predict` in process.

Run ``python benchmarks/serving.py [--clients 1,4,16] [--rounds 3] [--requests 48]
[--workers 2] [--protocol grpc|http] [--batch-delay-ms 0] [--server-python PYTHON]``.

The same encoded images (the astronaut in eight crops, flips and scales, PNG bytes) go
through three set-ups with N concurrent clients (threads) each:

* ``in-process``: one Recognizer (``workers`` = ``--workers``), ``predict(bytes)``;
* ``triton, batch 1``: ``edge-sdk serve --max-batch-size 1``: every request runs alone;
* ``triton, batch 16``: ``--max-batch-size 16``: Triton's dynamic batcher stacks
  requests that arrive while the instances are busy, and the face heads run once per batch.

Both servers run ``--workers`` instances per model, in a child process started with
``--server-python`` (default ``$EDGE_SDK_SERVE_PYTHON`` or this interpreter; it needs
numpy<2, see :mod:`edge_sdk.serving.server`); clients use ``edge_sdk.connect``. A round
sends ``--requests`` requests split over the N clients; requests/s is the round's count over
its wall time, latency is each request's round trip. Both servers run at once and the rounds
of the three set-ups are interleaved (who goes first rotates), so background load spreads
over every column. Table: medians over ``--rounds`` rounds of requests/s, p50/p99 latency
over every request, the ratio to in-process at the same N, and the mean Triton batch size
(inferences / executions, from Triton's metrics). Client and servers share this machine's
cores. Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.face import machine  # noqa: E402
from edge_sdk.serving.server import free_ports  # noqa: E402

EXAMPLE = ROOT / "examples" / "astronaut.png"
LOCAL, OFF, ON = "in-process", "triton, batch 1", "triton, batch 16"


def images() -> list[bytes]:
    """Eight PNG-encoded variants of the astronaut (each has one face)."""
    image = cv2.imread(str(EXAMPLE))
    variants = [
        image,
        image[:, ::-1],
        image[30:, 40:],
        image[:460, 20:480],
        cv2.resize(image, None, fx=0.75, fy=0.75, interpolation=cv2.INTER_AREA),
        cv2.resize(image, None, fx=1.25, fy=1.25),
        cv2.GaussianBlur(image, (3, 3), 0),
        cv2.convertScaleAbs(image, alpha=0.9, beta=10),
    ]
    return [cv2.imencode(".png", np.ascontiguousarray(v))[1].tobytes() for v in variants]


def run_round(predict: Callable[[bytes], Any], data: list[bytes], clients: int,
              requests: int) -> tuple[float, list[float]]:  # fmt: skip
    """(requests/s, latencies in ms) of ``requests`` predictions from ``clients`` threads."""
    per_client = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index: int) -> list[float]:
        times = []
        for k in range(per_client[index]):
            begin = time.perf_counter()
            predict(data[(index + k * clients) % len(data)])
            times.append((time.perf_counter() - begin) * 1e3)
        return times

    start = time.perf_counter()
    with cf.ThreadPoolExecutor(clients) as pool:
        latencies = [t for ts in pool.map(client, range(clients)) for t in ts]
    return requests / (time.perf_counter() - start), latencies


def summarise(rates: list[float], latencies: list[float]) -> dict[str, float]:
    """Median requests/s over rounds; p50/p99 over every request's latency."""
    return {
        "rps": float(np.median(rates)),
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
    }


def counters(metrics_port: int) -> tuple[float, float]:
    """(inferences, executions) of the ``face`` model so far, from Triton's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()

    def value(name: str) -> float:
        found = re.search(rf'^{name}{{model="face",version="1"}} (\S+)$', text, re.M)
        return float(found.group(1)) if found else 0.0

    return value("nv_inference_count"), value("nv_inference_exec_count")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per row")
    parser.add_argument("--requests", type=int, default=48, help="requests per round")
    parser.add_argument("--workers", type=int, default=2, help="instances / Recognizer workers")
    parser.add_argument("--protocol", choices=("grpc", "http"), default="grpc")
    parser.add_argument("--batch-delay-ms", type=float, default=0.0,
                        help="Triton's max queue delay with batching on")  # fmt: skip
    parser.add_argument(
        "--server-python",
        default=os.environ.get("EDGE_SDK_SERVE_PYTHON") or sys.executable,
        help="interpreter of the server (its environment needs numpy<2)",
    )
    args = parser.parse_args()
    clients = [int(c) for c in args.clients.split(",")]

    import edge_sdk
    from edge_sdk.serving.server import spawn

    console = Console(width=max(Console().width, 100))
    data = images()
    setups = {
        OFF: ["--max-batch-size", "1"],
        ON: ["--max-batch-size", "16", "--batch-delay-ms", str(args.batch_delay_ms)],
    }
    with ExitStack() as stack:
        predict: dict[str, Callable[[bytes], Any]] = {}
        metrics: dict[str, int] = {}
        local = stack.enter_context(edge_sdk.load(workers=args.workers, max_queue=64))
        predict[LOCAL] = local.predict
        for name, extra in setups.items():  # both servers up, so rounds can interleave
            http, grpc, metrics[name] = free_ports(3)
            log = Path(tempfile.mkdtemp(prefix="edge-sdk-serve-bench-")) / "serve.log"
            ports = ["--address", "127.0.0.1", "--http-port", str(http),
                     "--grpc-port", str(grpc), "--metrics-port", str(metrics[name]),
                     "--workers", str(args.workers)]  # fmt: skip
            proc = spawn([*ports, *extra], http, log, python=args.server_python)
            stack.callback(proc.wait, timeout=120)
            stack.callback(proc.send_signal, signal.SIGTERM)
            port = grpc if args.protocol == "grpc" else http
            remote = stack.enter_context(edge_sdk.connect(f"{args.protocol}://127.0.0.1:{port}"))
            predict[name] = remote.predict
        rows: dict[tuple[str, int], dict[str, float]] = {}
        for n in clients:
            for call in predict.values():  # warm-up: sessions, connections, threads
                run_round(call, data, n, max(n, len(data)))
            rates: dict[str, list[float]] = {name: [] for name in predict}
            latencies: dict[str, list[float]] = {name: [] for name in predict}
            before = {name: counters(port) for name, port in metrics.items()}
            for r in range(args.rounds):  # interleaved, rotating who goes first
                names = list(predict)[r % len(predict) :] + list(predict)[: r % len(predict)]
                for name in names:
                    rate, times = run_round(predict[name], data, n, args.requests)
                    rates[name].append(rate)
                    latencies[name] += times
            for name in predict:
                rows[name, n] = summarise(rates[name], latencies[name])
                if name in metrics:
                    after = counters(metrics[name])
                    done = after[0] - before[name][0]
                    rows[name, n]["batch"] = done / max(after[1] - before[name][1], 1.0)
                console.print(f"{name}, {n} clients: {rows[name, n]}")

    table = Table(title=f"faces: Triton ({args.protocol}) vs in-process, {args.workers} workers")
    rows = dict(sorted(rows.items(), key=lambda item: list(predict).index(item[0][0])))
    for column in ("set-up", "clients", "req/s", "p50 ms", "p99 ms", "x local",
                   "x batch off", "mean batch"):  # fmt: skip
        table.add_column(column, justify="right" if column != "set-up" else "left")
    for (name, n), row in rows.items():
        base = rows[LOCAL, n]["rps"]
        off = rows.get((OFF, n))
        vs_off = f"{row['rps'] / off['rps']:.2f}" if off and name == ON else "-"
        table.add_row(
            name, str(n), f"{row['rps']:.1f}", f"{row['p50']:.0f}", f"{row['p99']:.0f}",
            f"{row['rps'] / base:.2f}", vs_off,
            f"{row['batch']:.2f}" if "batch" in row else "-",
        )  # fmt: skip
    console.print(table)
    console.print(f"machine: {machine()}", soft_wrap=True)
    console.print(
        f"{args.rounds} rounds of {args.requests} requests per row (medians); 8 PNG images "
        "of 384-640 px with one face each; client threads and server share the cores",
        soft_wrap=True,
    )


if __name__ == "__main__":
    main()
