"""Training: one step (single, stacked, distributed), the loop and its periodic actions (log lines,
evaluations, checkpoints, the collapse check), what a run writes, the trainer that ties them together, and
the benchmark of the step. Layer 4, beside `jvae.explore`.

May import: layers 0-3 (`jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.modeling`, `jvae.kinds`,
`jvae.fast`, `jvae.evaluation`, `jvae.use`, `jvae.runs`); never `jvae.studies`, `jvae.api` or `jvae.cli`.
"""
