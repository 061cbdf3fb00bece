"""The MNIST recipes the 2018-recipe measurement compares, as preset overrides that name every field they set,
so each means the same whatever a preset's defaults are. One definition serves the benchmark
(`benchmarks/mnist_accuracy.py`) and the tests that train a recipe.

a: today's recipe: loss per image, bf16 autocast, today's Adam and initialisation, last batch dropped.
b: the official code's loss per pixel and fp32, with today's Adam and initialisation.
c: the 2018 recipe the released models were trained with: (b) plus PyTorch 0.4.1's Adam and initialisation and
   the kept last batch (what the paper presets train).
c-bf16: (c) under bf16 autocast, the precision measurement's other side.
c-mi, c-marginal, c-consistency: (c) with the discrete code's options (see `jvae.kinds.jointvae`): the
   capacity on I(x; c); the marginal term at weight 30; the capacity on I(x; c) with the consistency term at
   weight 30.
"""

from __future__ import annotations

RECIPES: dict[str, tuple[str, ...]] = {
    "a": (
        'loss.objective_scale="image"',
        'train.precision="bf16"',
        'train.adam="current"',
        'model.init="current"',
        'train.last_batch="drop"',
    ),
    "b": (
        'loss.objective_scale="pixel"',
        'train.precision="fp32"',
        'train.adam="current"',
        'model.init="current"',
        'train.last_batch="drop"',
    ),
    "c": (
        'loss.objective_scale="pixel"',
        'train.precision="fp32"',
        'train.adam="pytorch-0.4"',
        'model.init="pytorch-0.4"',
        'train.last_batch="keep"',
    ),
}
RECIPES["c-bf16"] = tuple(
    'train.precision="bf16"' if field.startswith("train.precision=") else field for field in RECIPES["c"]
)
RECIPES["c-mi"] = (*RECIPES["c"], 'loss.discrete_measure="mutual-information"')
RECIPES["c-marginal"] = (*RECIPES["c"], "loss.marginal_weight=30.0")
RECIPES["c-consistency"] = (*RECIPES["c-mi"], "loss.consistency_weight=30.0")
RECIPE_2018 = RECIPES["c"]
