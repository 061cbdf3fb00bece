"""Run folders: what a run folder holds and where (`runfolder`), which runs one training call trains into
which folders (`runplan`), and the training curves read back from a folder. Layer 3.

May import: layers 0-2 (`jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.modeling`, `jvae.kinds`,
`jvae.fast`).
"""
