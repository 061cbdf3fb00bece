"""Bounds on the numbers users pass, shared by the preset schema and the command line (no imports, so the
CLI can use them without loading the engine)."""

SEED_MAX = 2**32 - 2  # numpy's RandomState takes seeds below 2**32, and jvae draws some from seed + 1
VALUE_LIMIT = 1000  # |value| of a code set by edit or traverse: far beyond anything a decoder was trained
# on, and still finite in float32 after every operation a code goes through
