"""Bounds on the numbers users pass, shared by the preset schema and the command line (no imports, so the
CLI can use them without loading the engine)."""

SEED_MAX = 2**32 - 2  # numpy's RandomState takes seeds below 2**32, and jvae draws some from seed + 1
VALUE_LIMIT = 1000  # |value| of a code set by edit or traverse: far beyond anything a decoder was trained
# on, and still finite in float32 after every operation a code goes through
SEEDS_MAX = 1000  # seeds one --seeds may name (a study's or a stack's)
RUNS_MAX = 10000  # runs in one study: presets x grid values x seeds
STACK_MAX = 256  # models one stacked process trains (each holds a lock, a model and its optimiser)
# Sizes a preset may ask for: each far beyond any published setting, and small enough that building the
# model, its optimiser and a batch stays within an ordinary machine's memory.
CATEGORIES_MAX = 1000  # categories of one discrete variable
DISCRETE_VARIABLES_MAX = 64
LATENT_MAX = 8192  # continuous units plus every discrete category
HIDDEN_MAX = 8192  # width of the fully connected layer
CLASSES_MAX = 1000  # label classes of a class-conditional model
BATCH_MAX = 16384  # images per step
STEPS_MAX = 10**9  # any count of steps: training length, schedules, intervals
EPOCHS_MAX = 10**6
