"""`python -m jvae_cli` runs the jvae command line (also what torchrun launches)."""

from jvae_cli.cli import main

main()
