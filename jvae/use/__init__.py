"""Using a trained model: encoding and editing images, traversal and sample figures, the authors' released
models by name, the metrics as a plain API and report writing. Layer 3, beside `jvae.evaluation` and
`jvae.runs`.

May import: layers 0-2 (`jvae.base`, `jvae.data`, `jvae.trackers`, `jvae.modeling`, `jvae.kinds`,
`jvae.fast`) and `jvae.evaluation`.
"""
