"""Loading speed of an image folder: first use (decode + write the preprocessing cache) versus cached use.

    python benchmarks/folder_loading.py [--images 20000] [--size 64] [--channels 3]

Writes N random-content 218x178 JPEGs (CelebA's size) into a temporary folder, then prints images/s for
opening the dataset the first time, opening it again from the cache, and reading one epoch of batches of 64.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--size", type=int, default=64, choices=(32, 64))
    parser.add_argument("--channels", type=int, default=3, choices=(1, 3))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        os.environ["JVAE_CACHE"] = str(Path(scratch) / "cache")
        from jvae.data import open_dataset
        from jvae.modeling.presets import DataConfig

        folder = Path(scratch) / "jpegs"
        folder.mkdir()
        rng = np.random.default_rng(0)
        base = rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)
        for i in range(args.images):
            picture = np.roll(base, i % 178, axis=1)
            Image.fromarray(picture).save(folder / f"{i:06d}.jpg", quality=90)
        config = DataConfig(dataset="folder", image_size=args.size, channels=args.channels)

        start = time.perf_counter()
        source = open_dataset(config, data_path=str(folder))
        first = time.perf_counter() - start
        start = time.perf_counter()
        source = open_dataset(config, data_path=str(folder))
        cached = time.perf_counter() - start
        order = torch.randperm(len(source))
        start = time.perf_counter()
        for i in range(0, len(source) - 63, 64):
            source.images(order[i : i + 64], torch.device("cpu"))
        epoch = time.perf_counter() - start
        print(f"{args.images} JPEGs 218x178 -> {args.channels}x{args.size}x{args.size}")
        print(
            f"first use (decode, crop, resize, write cache): {first:7.1f} s  {args.images / first:9.0f} images/s"
        )
        print(
            f"cached use (open the cache):                   {cached:7.2f} s  {args.images / cached:9.0f} images/s"
        )
        print(
            f"one epoch of batches of 64 from the cache:     {epoch:7.2f} s  {args.images / epoch:9.0f} images/s"
        )


if __name__ == "__main__":
    main()
