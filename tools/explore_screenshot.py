"""The explorer's screenshot in the manual, taken from a real model: the released MNIST model, started from
one of the test digits, with the top unit moved (tools/ holds the scripts that redraw the manual's pictures).

    python tools/explore_screenshot.py --official trained_models/mnist --mnist DIR --out docs/explore.png

`--official` is a local copy of the JointVAE repository's `trained_models/mnist` folder (model.pt and
specs.json; without it `official:mnist` is downloaded), `--mnist` the MNIST files in torchvision's layout
(DIR/MNIST/raw/*-ubyte), from which the first test digit of each of three classes is shown. It runs
`jvae explore` on a free local port and drives Debian's Chromium headless through Playwright (the explore
and test extras), as tests/test_explore.py does.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
DIGITS = (2, 7, 5)


def jvae(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "jvae", *map(str, args)], check=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_digits(mnist: Path, folder: Path) -> list[Path]:
    """The first test image of each class in DIGITS, as 28x28 PNGs (what a user would upload)."""
    import numpy as np
    from PIL import Image

    raw = mnist / "MNIST" / "raw"
    images = np.frombuffer((raw / "t10k-images-idx3-ubyte").read_bytes()[16:], dtype=np.uint8)
    labels = np.frombuffer((raw / "t10k-labels-idx1-ubyte").read_bytes()[8:], dtype=np.uint8)
    paths = []
    for digit in DIGITS:
        index = int(np.flatnonzero(labels == digit)[0])
        path = folder / f"digit-{digit}.png"
        Image.fromarray(images[index * 784 : (index + 1) * 784].reshape(28, 28)).save(path)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", type=Path, help="local trained_models/mnist (else downloaded)")
    parser.add_argument("--mnist", type=Path, required=True, help="MNIST in torchvision's layout")
    parser.add_argument("--out", type=Path, default=Path("docs/explore.png"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        checkpoint: object = "official:mnist"
        if args.official is not None:
            checkpoint = folder / "official-mnist.pt"
            jvae("import", "official", args.official, "--out", checkpoint)
        digits = test_digits(args.mnist, folder)
        port = free_port()
        images = [item for path in digits for item in ("--image", path)]
        command = [sys.executable, "-m", "jvae", "explore", str(checkpoint), "--port", str(port)]
        server = subprocess.Popen([*command, "--no-browser", "--device", "cpu", *images])
        try:
            address = f"http://127.0.0.1:{port}/"
            for _ in range(600):
                try:
                    urllib.request.urlopen(address, timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(address)
                page.wait_for_selector("#picture[data-state='ready']", state="attached")
                page.click("#images button[data-index='0']")
                page.wait_for_selector("#picture[data-state='ready']", state="attached")
                top = page.query_selector(".unit[data-kind=continuous]")
                page.focus(f"#unit-{top.get_attribute('data-address')}")
                for _ in range(4):
                    page.keyboard.press("ArrowRight")
                page.wait_for_selector("#picture[data-state='ready']", state="attached")
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
