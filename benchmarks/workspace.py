"""CocoER workspace latency: in-process PyTorch vs the sidecar process vs the numpy analytic form.

All three run :meth:`edge_sdk.workspace.Workspace.update` on the same float32 graph outputs
(z_c, z_b, z_h, y_t, z_t as the engines give them): ``torch`` is the autograd reference in this
process, ``sidecar`` the same torch workspace in a separate process behind the Unix socket
(so the column includes framing, two copies and the socket round trip), ``numpy`` the analytic
form in this process. ``ping`` is an empty sidecar round trip: the transport's floor. Sizes come
from the scene-cocoer configs (``edge``: d = 256, k = 7, softmax; ``edge-emotic``: k = 26,
sigmoid); θ_l is random, since latency does not depend on its values. B = 1 is the per-sample
case, B = 16 the graphs' largest batch. The methods run round-robin inside every repeat so
load drift hits them alike. torch runs with one thread here and in the sidecar
(``--torch-threads``; :func:`edge_sdk.sidecar.serve` says why). Every batch is first checked:
sidecar == torch bit for bit, numpy within 1e-9.
Run ``python benchmarks/workspace.py [--repeats N] [--batches 1,16]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from edge_sdk.sidecar import SidecarClient, SidecarProcess
from edge_sdk.workspace import LEVEL_OUTPUTS, LEVELS, Workspace

METHODS = ("torch", "sidecar", "numpy", "ping")


def machine() -> str:
    """CPU model, cores, thread settings and library versions."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle if "model name" in line]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} cores, load {load:.1f}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}"
    )


def sizes(config: str) -> tuple[int, int, bool]:
    """(d, k, multi_label) of a scene-cocoer config."""
    from edge_sdk.models.scene_cocoer.family import CONFIGS

    cfg = CONFIGS[config]
    return cfg.clip_embed_dim, len(cfg.vocabulary), cfg.multi_label


def graph_outputs(rng: np.random.Generator, batch: int, d: int, k: int, multi: bool) -> dict:
    """float32 outputs shaped like the levels and alignment graphs' (z_t included)."""
    out = {name: rng.normal(size=(batch, d)).astype(np.float32) for name in LEVEL_OUTPUTS}
    if multi:
        out["y_t"] = rng.uniform(0, 1, (batch, k)).astype(np.float32)
    else:
        out["y_t"] = rng.dirichlet(np.ones(k), batch).astype(np.float32)
    out["z_t"] = rng.normal(size=(batch, d)).astype(np.float32)
    return out


def check(torch_ws: Workspace, numpy_ws: Workspace, client: SidecarClient, outputs: dict) -> None:
    """The three agree (sidecar bit-identical to in-process torch) before anything is timed."""
    reference = torch_ws.update(outputs).to_arrays()
    remote = client.update(outputs).to_arrays()
    analytic = numpy_ws.update(outputs).to_arrays()
    for name, value in reference.items():
        if not np.array_equal(remote[name], value):
            raise SystemExit(f"sidecar differs from in-process torch in {name}")
        if not np.allclose(analytic[name], value, rtol=0, atol=1e-9):
            raise SystemExit(f"numpy differs from torch in {name}")


def measure(calls: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict:
    """ms samples per method, round-robin."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - start) * 1e3)
    return {name: np.asarray(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed runs per case")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per case first")
    parser.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--configs", default="edge,edge-emotic", help="scene-cocoer configs")
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads here and in the sidecar"
    )
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    import torch

    torch.set_num_threads(args.torch_threads)

    console = Console(width=150)
    console.print(f"[bold]machine[/bold]: {machine()}")
    table = Table(title=f"workspace update, ms per call: median (p90) of {args.repeats} runs")
    table.caption_justify = "left"
    for column in (
        "config",
        "B",
        *METHODS,
        "sidecar\n/torch",
        "numpy\n/torch",
        "torch ms\n/sample",
    ):
        table.add_column(column, justify="left" if column == "config" else "right")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="ws-bench-", dir="/tmp") as tmp:
        for config in args.configs.split(","):
            d, k, multi = sizes(config)
            theta = {m: rng.normal(0, 0.05, (k, d)).astype(np.float32) for m in LEVELS}
            torch_ws = Workspace(theta, multi_label=multi, backend="torch")
            numpy_ws = Workspace(theta, multi_label=multi, backend="numpy")
            weights = torch_ws.save(Path(tmp) / f"{config}.safetensors")
            with (
                SidecarProcess(
                    weights=weights, backend="torch", threads=args.torch_threads
                ) as process,
                SidecarClient(process.socket_path, timeout=30.0) as client,
            ):
                for i, batch in enumerate(batches):
                    outputs = graph_outputs(rng, batch, d, k, multi)
                    check(torch_ws, numpy_ws, client, outputs)
                    runs = measure(
                        {
                            "torch": partial(torch_ws.update, outputs),
                            "sidecar": partial(client.update, outputs),
                            "numpy": partial(numpy_ws.update, outputs),
                            "ping": client.ping,
                        },
                        args.warmup,
                        args.repeats,
                    )
                    med = {name: float(np.median(v)) for name, v in runs.items()}
                    cells = [f"{med[n]:.3f} ({np.percentile(runs[n], 90):.3f})" for n in METHODS]
                    table.add_row(
                        f"{config} d={d} k={k} {'sigmoid' if multi else 'softmax'}"
                        if i == 0
                        else "",
                        str(batch),
                        *cells,
                        f"{med['sidecar'] / med['torch']:.2f}",
                        f"{med['numpy'] / med['torch']:.2f}",
                        f"{med['torch'] / batch:.3f}",
                        end_section=i == len(batches) - 1,
                    )
    table.caption = (
        "checked first: sidecar == in-process torch bit for bit, numpy within 1e-9; "
        "ping = empty request round trip"
    )
    console.print(table)


if __name__ == "__main__":
    main()
