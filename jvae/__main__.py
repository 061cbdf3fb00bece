"""`python -m jvae` runs the jvae command line (also what torchrun launches)."""

from jvae.cli import main

main()
