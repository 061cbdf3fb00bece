"""The vocabulary every layer shares: errors, size limits, safe file writing, devices and threads, image and
media files, tables, the run-file schemas, the preset's section base classes, the callback protocol and the
version.

May import: nothing from jvae outside this package (layer 0).
"""
