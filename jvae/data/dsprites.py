"""dSprites (Matthey et al. 2017): 737280 binary 64x64 sprites from five independent factors.

Two sources with the same factors and index order: the published npz file, and a procedural generator that
draws any factor combination on demand (on the training device, so nothing of size 737280 x 64 x 64 is ever
held). The generator draws the published dataset's geometry: the shape centre of position p sits at pixel 16 + 32p,
squares are about 20 px wide at scale 1, ellipses about 26x14 px and hearts about 20x17 px.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import DataError, DataNotFoundError
from jvae.data.capabilities import uniform_factors
from jvae.data.download import download
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import ImageSource, fit_images

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

FILE_NAME = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
URL = "https://github.com/deepmind/dsprites-dataset/raw/master/" + FILE_NAME
MD5 = "7da33b31b13a06f4b04a70402ce90c2e"  # of the published file
LAYOUT = Layout(
    "dsprites",
    FILE_NAME,
    "--set data.download=true fetches it, or use --set data.source=generated",
)
FACTOR_NAMES = ["shape", "scale", "orientation", "posX", "posY"]
FACTOR_SIZES = [3, 6, 40, 32, 32]
SHAPES = ["square", "ellipse", "heart"]
SIDE = 64
# index = dot(classes, strides) over (colour, shape, scale, orientation, posX, posY), posY fastest, as in the
# published file (its latents_bases); colour has one value.
STRIDES = np.array([737280, 245760, 40960, 1024, 32, 1], dtype=np.int64)
COUNT = 737280

# Shape extents at scale 1, in pixels: half-width and half-height.
SQUARE_HALF = 10.0
ELLIPSE_HALF = (13.0, 7.0)
HEART_HALF = (10.0, 8.5)
# The implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0 spans x in [-1.139, 1.139] and y in [-1, 1.236].
HEART_X, HEART_Y_LOW, HEART_Y_HIGH = 1.139, -1.0, 1.236
# No sprite reaches further than the rotated square's corner, 10 * sqrt(2) pixels at scale 1, from its centre;
# the window of pixels tested for it spans centre - 15 to centre + 16, which holds that reach whatever the
# centre's fraction, and centres lie in [16, 48], so windows end at most one pixel past the frame.
SPRITE_REACH = SQUARE_HALF * math.sqrt(2)
WINDOW = 2 * (math.ceil(SPRITE_REACH) + 1)  # 32: offsets -15..16 from the centre's pixel
FRAME_MARGIN = 2


# ----------------------------------------------------------------------------------------------- indexing


def factors_to_index(factors: np.ndarray) -> np.ndarray:
    """Dataset index of factor classes (n, 5) in FACTOR_NAMES order."""
    return factors.astype(np.int64) @ STRIDES[1:]


def index_to_factors(index: np.ndarray) -> np.ndarray:
    index = np.asarray(index, dtype=np.int64)
    return np.stack([(index // stride) % size for stride, size in zip(STRIDES[1:], FACTOR_SIZES)], axis=1)


# ----------------------------------------------------------------------------------------------- rendering


def _inside_square(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() <= SQUARE_HALF) & (v.abs() <= SQUARE_HALF)


def _inside_ellipse(u: Tensor, v: Tensor) -> Tensor:
    return (u * (1 / ELLIPSE_HALF[0])).square() + (v * (1 / ELLIPSE_HALF[1])).square() <= 1


def _inside_heart(u: Tensor, v: Tensor) -> Tensor:
    x = u * (HEART_X / HEART_HALF[0])
    y = v * (-(HEART_Y_HIGH - HEART_Y_LOW) / (2 * HEART_HALF[1])) + (HEART_Y_HIGH + HEART_Y_LOW) / 2
    x2 = x.square()
    return (x2 + y.square() - 1).pow(3) <= x2 * y.pow(3)


def render(factors: Tensor, device: torch.device, select: bool | None = None) -> Tensor:
    """Binary sprites (n, 1, 64, 64) float for factor classes (n, 5) (shape, scale, orientation, posX, posY).

    Every sprite lies within SPRITE_REACH pixels of its centre, so only a WINDOW x WINDOW square around the
    centre is tested and the rest of the frame stays empty (a sixteenth of the work of testing every pixel).
    `select` (the default on a GPU) tests every window pixel against all three shapes and keeps each
    sprite's own, avoiding the data-dependent indexing that would make the host wait for the GPU.
    """
    select = device.type == "cuda" if select is None else select
    f = factors.to(device=device, dtype=torch.long)
    n = f.shape[0]
    scale = (0.5 + 0.1 * f[:, 1].float()).view(n, 1, 1)
    angle = (f[:, 2].float() * (2 * math.pi / (FACTOR_SIZES[2] - 1))).view(n, 1, 1)
    centre_x = (16 + 32 * f[:, 3].float() / (FACTOR_SIZES[3] - 1)).view(n, 1, 1)
    centre_y = (16 + 32 * f[:, 4].float() / (FACTOR_SIZES[4] - 1)).view(n, 1, 1)
    offsets = torch.arange(WINDOW, device=device) - (WINDOW // 2 - 1)
    columns = centre_x.floor().long() + offsets.view(1, 1, WINDOW)  # (n, 1, W) frame columns
    rows = centre_y.floor().long() + offsets.view(1, WINDOW, 1)  # (n, W, 1) frame rows
    dx = columns.float() - centre_x
    dy = rows.float() - centre_y
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # (n, 1, 1) rotation and scale at once
    u = cos * dx + sin * dy  # (n, W, W) coordinates in the sprite's own frame
    v = cos * dy - sin * dx

    shape = f[:, 0]
    tests = (_inside_square, _inside_ellipse, _inside_heart)
    if select:
        mask = torch.zeros((n, WINDOW, WINDOW), dtype=torch.bool, device=device)
        for kind, inside in enumerate(tests):
            mask |= (shape == kind).view(n, 1, 1) & inside(u, v)
    else:
        mask = torch.empty((n, WINDOW, WINDOW), dtype=torch.bool, device=device)
        for kind, inside in enumerate(tests):  # on a CPU, test each sprite against its own shape only
            picked = (shape == kind).nonzero().squeeze(1)
            if picked.numel():
                mask[picked] = inside(u[picked], v[picked])
    # Windows reach at most FRAME_MARGIN past the frame's far edge; the margin is cut off again below.
    frame = torch.zeros((n, SIDE + FRAME_MARGIN, SIDE + FRAME_MARGIN), dtype=torch.bool, device=device)
    frame[torch.arange(n, device=device).view(n, 1, 1), rows, columns] = mask
    return frame[:, :SIDE, :SIDE].float().unsqueeze(1)


# ----------------------------------------------------------------------------------------------- sources


class _DSpritesBase:
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self, channels: int, image_size: int) -> None:
        self.channels = channels
        self.image_size = image_size

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        return uniform_factors(self.factor_sizes, n, rng)

    def factors(self, indices: np.ndarray) -> np.ndarray:
        return index_to_factors(indices)

    def _raw(self, factors: np.ndarray, device: torch.device) -> Tensor:
        raise NotImplementedError

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        return fit_images(self._raw(np.asarray(factors), device), self.channels, self.image_size)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        return self.observations(index_to_factors(indices.cpu().numpy()), device)


class GeneratedDSprites(_DSpritesBase):
    """All 737280 combinations, each drawn when asked for."""

    description = "dSprites (generated)"

    def __len__(self) -> int:
        return COUNT

    def _raw(self, factors: np.ndarray, device: torch.device) -> Tensor:
        return render(torch.from_numpy(factors.astype(np.int64)), device)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        """Indices to factors on the device itself, so a GPU batch never travels through the host."""
        index = indices.to(device=device, dtype=torch.long).unsqueeze(1)
        strides = torch.as_tensor(STRIDES[1:], device=device)
        sizes = torch.as_tensor(FACTOR_SIZES, device=device)
        return fit_images(render((index // strides) % sizes, device), self.channels, self.image_size)


def read_npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a .npy stream, leaving it at the first data byte (so it can be read in chunks)."""
    version = np.lib.format.read_magic(handle)
    read_header = (
        np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    )
    shape, fortran, dtype = read_header(handle)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not supported")
    return shape, dtype


def _read_npy_member(archive: zipfile.ZipFile, name: str) -> tuple[IO[bytes], tuple[int, ...], np.dtype]:
    handle = archive.open(name)
    shape, dtype = read_npy_header(handle)
    return handle, shape, dtype


class FileDSprites(_DSpritesBase):
    """The published npz, read in chunks and kept bit-packed (about 380 MB instead of 3 GB)."""

    def __init__(self, path: Path, channels: int, image_size: int) -> None:
        super().__init__(channels, image_size)
        self.description = f"dSprites ({path})"
        try:
            with zipfile.ZipFile(path) as archive:
                members = set(archive.namelist())
                for key in ("imgs.npy", "latents_classes.npy"):
                    if key not in members:
                        raise DataError(f"{path}: not a dSprites npz (it has no {key[:-4]!r} array)")
                with archive.open("latents_classes.npy") as handle:
                    classes = np.lib.format.read_array(handle)
                handle, shape, dtype = _read_npy_member(archive, "imgs.npy")
                with handle:
                    self.packed = self._read_packed(handle, shape, dtype, path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise DataError(f"{path}: cannot read as a dSprites npz ({exc})") from None
        if classes.ndim != 2 or classes.shape != (shape[0], 6):
            raise DataError(f"{path}: latents_classes has shape {classes.shape}, expected ({shape[0]}, 6)")
        index = factors_to_index(classes[:, 1:])
        if index.min() < 0 or index.max() >= COUNT:
            raise DataError(f"{path}: latents_classes holds factor values outside dSprites' ranges")
        self.index = index  # (N,) canonical index of each stored image
        self.position = np.full(COUNT, -1, dtype=np.int64)
        self.position[index] = np.arange(len(index))

    @staticmethod
    def _read_packed(handle: IO[bytes], shape: tuple[int, ...], dtype: np.dtype, path: Path) -> np.ndarray:
        if len(shape) != 3 or shape[1:] != (SIDE, SIDE):
            raise DataError(f"{path}: imgs has shape {shape}, expected (N, 64, 64)")
        packed = np.empty((shape[0], SIDE, SIDE // 8), dtype=np.uint8)
        chunk = 16384
        row_bytes = SIDE * SIDE * dtype.itemsize
        for start in range(0, shape[0], chunk):
            rows = min(chunk, shape[0] - start)
            buffer = handle.read(rows * row_bytes)
            if len(buffer) != rows * row_bytes:
                raise DataError(f"{path}: imgs ends early at image {start + len(buffer) // row_bytes}")
            block = np.frombuffer(buffer, dtype=dtype).reshape(rows, SIDE, SIDE)
            packed[start : start + rows] = np.packbits(block != 0, axis=-1)
        return packed

    def __len__(self) -> int:
        return self.packed.shape[0]

    def factors(self, indices: np.ndarray) -> np.ndarray:
        return index_to_factors(self.index[np.asarray(indices)])

    def _unpack(self, rows: np.ndarray, device: torch.device) -> Tensor:
        bits = np.unpackbits(self.packed[rows], axis=-1)  # (n, 64, 64) uint8
        return torch.from_numpy(bits).to(device).float().unsqueeze(1)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        return fit_images(self._unpack(indices.cpu().numpy(), device), self.channels, self.image_size)

    def _raw(self, factors: np.ndarray, device: torch.device) -> Tensor:
        rows = self.position[factors_to_index(factors)]
        if (rows < 0).any():
            raise DataError("this dSprites file does not hold every factor combination asked for")
        return self._unpack(rows, device)


# ----------------------------------------------------------------------------------------------- registry


def _published_file(root: Path) -> Path:
    for candidate in (root, root / FILE_NAME, root / "dsprites" / FILE_NAME):
        if candidate.is_file():
            return candidate
    raise not_found(LAYOUT, root)


FILE_MAX_BYTES = 64 * 2**20  # the published file is 26 MB


def open_dsprites(config: DataSection, data_path: str | None) -> ImageSource:
    if config.source == "generated":
        return GeneratedDSprites(config.channels, config.image_size)
    root = data_root(LAYOUT, data_path, config.path, config.download)
    try:
        path = _published_file(root)
    except DataNotFoundError:
        if not config.download:
            raise
        target = root if root.suffix == ".npz" else root / FILE_NAME
        path = download(URL, target, MD5, max_bytes=FILE_MAX_BYTES)
    return FileDSprites(path, config.channels, config.image_size)


DATASET = Dataset("dsprites", LAYOUT, open_dsprites, factors=True, generated=True)
