"""The model and its objectives: the network and its initialisation, the posterior and its losses, the
aggregate posterior of the discrete code, the preset schema, the builder, the schedules and the checkpoint
format. With `jvae.kinds` (one module per model kind) and `jvae.fast` (jvae's own kernels) it is layer 2.

May import: `jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.kinds`, `jvae.fast`.
"""
