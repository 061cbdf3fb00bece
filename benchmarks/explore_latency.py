"""Decode round trip of `jvae explore`: how long the page waits for an image after a slider moves.

    python benchmarks/explore_latency.py [--preset quickstart] [--requests 300] [--device cpu]

Saves an untrained checkpoint of the preset's model (the decoder's cost does not depend on its weights),
starts the real `jvae explore` on it in its own process, and times HTTP GET /api/decode requests over one
kept-alive connection, as a browser sends them, each moving one unit to a new value. Prints the median and
95th percentile in milliseconds: what the page waits, less the browser drawing the PNG.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="quickstart", help="quickstart: JointVAE at 64x64")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from jvae.modeling.builder import build_model
    from jvae.modeling.checkpoint import Checkpoint
    from jvae.modeling.presets import load_preset

    name, preset = load_preset(args.preset)
    with tempfile.TemporaryDirectory() as scratch:
        ckpt = Path(scratch) / "ckpt.pt"
        Checkpoint.new(name, preset, build_model(preset).state_dict()).save(ckpt)
        command = [sys.executable, "-m", "jvae", "explore", str(ckpt), "--port", "0", "--no-browser"]
        server = subprocess.Popen([*command, "--device", args.device], stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[2]
            host, port = url.removeprefix("http://").rstrip("/").split(":")
            connection = http.client.HTTPConnection(host, int(port))
            times = []
            for i in range(args.warmup + args.requests):
                value = -1.6 + 3.2 * (i % 50) / 49  # a slider dragged back and forth
                started = time.perf_counter()
                connection.request("GET", f"/api/decode?0={value:.4f}&1=0.3")
                reply = connection.getresponse()
                body = reply.read()
                elapsed = time.perf_counter() - started
                assert reply.status == 200 and body.startswith(b"\x89PNG"), body[:200]
                if i >= args.warmup:
                    times.append(elapsed * 1000)
            connection.close()
        finally:
            server.terminate()
            server.wait()
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    side = preset.data.image_size
    print(
        f"{args.preset} ({side}x{side}, {args.device}): decode round trip over {len(times)} requests: "
        f"median {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, max {times[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
