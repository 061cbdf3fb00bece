"""Many runs at once: studies (sweeps over presets, seeds and values, on this machine or through Slurm),
choosing a run without labels (UDR), and comparing runs. Layer 5.

May import: layers 0-4 (everything but `jvae.api` and `jvae.cli`).
"""
