"""jvae's version, written here only: the package metadata (pyproject's dynamic version), `jvae --version`,
checkpoints and reports read it."""

__version__ = "0.2.0.dev0"
