"""Where a training step's time goes, layer by layer, against what this machine can do.

`jvae bench --layers` times each layer of the preset's network on its own, in each pass a step runs (the
forward, the gradient for the layer's input and the gradient for its weights), then the reparameterised
sampling, the loss and the optimiser step, and finally whole steps as `jvae train` runs them. Each time is
put beside the machine's own peak for the same shape class, measured by the same command a moment before: a
float32 and a bfloat16 matrix product of the layer's im2col shape for a convolution or a linear layer (so a
convolution that reaches 60% of its product's rate is judged against a product of its own size, not a square
one that fits the caches better), and a copy of the same number of bytes for the memory-bound parts
(activations, the optimiser). The parts rarely add up to the whole step: what is left is autograd's own
bookkeeping and the framework's per-operation overhead, shown as its own row.

Stacks (`--stack K`) run their own layer walk; for them the profile gives the step's phases (forward,
backward, optimiser) per stack and per model.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from jvae.base.errors import UsageError
from jvae.base.host_memory import pages_kept
from jvae.data.sources import ImageSource
from jvae.kinds import kind_of, model_objective
from jvae.modeling.model import JointVAE, Posterior
from jvae.modeling.presets import Preset, with_seed
from jvae.modeling.schedules import temperature
from jvae.training.bench import bench_setting
from jvae.training.steps import Stepper

ELEMENTWISE = (nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SiLU, nn.GELU)
SQUARE_SIDES = (1024, 2048)  # the square products whose best rate is quoted as the machine's peak


@dataclass
class Part:
    """One timed piece of the step: a layer's pass, or the sampling, the loss, the optimiser."""

    name: str
    passes: str  # forward, input grad, weight grad, step, or the phase's name
    ms: float
    work: float = 0.0  # FLOP, or bytes for memory-bound parts
    unit: str = ""  # GFLOP/s or GB/s; empty when the part has no rate worth quoting
    peak: float = 0.0  # the same unit: this machine's float32 rate for the same shape class
    peak_bf16: float = 0.0

    @property
    def rate(self) -> float:
        return self.work / (self.ms * 1e6) if self.ms > 0 and self.unit else 0.0

    @property
    def of_peak(self) -> float:
        return self.rate / self.peak if self.peak > 0 else 0.0


@dataclass
class Profile:
    setting: dict[str, Any]
    parts: list[Part]
    step_ms: float  # a whole step as `jvae train` runs it (median)
    phases: dict[str, float]  # ms per step of each phase of the whole step
    peak: dict[str, float] = field(default_factory=dict)  # GFLOP/s of the square products

    @property
    def accounted_ms(self) -> float:
        return sum(part.ms for part in self.parts)

    def as_dict(self) -> dict[str, Any]:
        parts = [{**asdict(p), "rate": p.rate, "of_peak": p.of_peak} for p in self.parts]
        return {
            "setting": self.setting,
            "step_ms": self.step_ms,
            "phases_ms": self.phases,
            "accounted_ms": self.accounted_ms,
            "peak_gflops": self.peak,
            "parts": parts,
        }


def _median_ms(
    work: Callable[[Any], Any], setup: Callable[[], Any], repeats: int, device: torch.device
) -> float:
    """Median wall time of `work(setup())` with the setup left out of the clock."""
    times = []
    for _ in range(repeats + 1):  # the first call warms caches and allocator, and is not counted
        prepared = setup()
        _sync(device)
        started = time.perf_counter()
        work(prepared)
        _sync(device)
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times[1:])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Peaks:
    """This machine's rates, measured once per shape: matrix products in float32 and bfloat16, copies."""

    def __init__(self, device: torch.device, repeats: int) -> None:
        from jvae.base.devices import bf16_is_fast

        self.device, self.repeats = device, repeats
        self.bf16 = bf16_is_fast(device)  # else bf16 is emulated: one square product says how slowly
        self._products: dict[tuple[int, int, int, torch.dtype], float] = {}
        self._copies: dict[int, float] = {}

    def product(self, m: int, k: int, n: int, dtype: torch.dtype = torch.float32) -> float:
        """GFLOP/s of an (m x k) @ (k x n) product."""
        key = (m, k, n, dtype)
        if key not in self._products:
            a = torch.randn(m, k, device=self.device).to(dtype)
            b = torch.randn(k, n, device=self.device).to(dtype)
            ms = _median_ms(lambda _: torch.mm(a, b), lambda: None, self.repeats, self.device)
            self._products[key] = 2.0 * m * k * n / (ms * 1e6)
        return self._products[key]

    def copy(self, nbytes: int) -> float:
        """GB/s of copying `nbytes` bytes (counted once read and once written)."""
        count = max(nbytes // 8, 1)  # each float32 element is read and written: 8 bytes moved
        if count not in self._copies:
            source = torch.randn(count, device=self.device)
            target = torch.empty_like(source)
            ms = _median_ms(lambda _: target.copy_(source), lambda: None, self.repeats, self.device)
            self._copies[count] = 8.0 * count / (ms * 1e6)
        return self._copies[count]

    def product_bf16(self, m: int, k: int, n: int) -> float:
        return self.product(m, k, n, torch.bfloat16) if self.bf16 else 0.0

    def square(self) -> dict[str, float]:
        sides = {"float32": SQUARE_SIDES, "bfloat16": SQUARE_SIDES if self.bf16 else SQUARE_SIDES[:1]}
        best: dict[str, float] = {}
        for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            best[name] = max(self.product(side, side, side, dtype) for side in sides[name])
        return best


def _products_of(module: nn.Module, x: Tensor, y: Tensor) -> dict[str, tuple[int, int, int]] | None:
    """The (m, k, n) matrix product each pass of `module` amounts to, or None for a layer that is not one."""
    if isinstance(module, nn.Conv2d):
        batch, c_out, h_out, w_out = y.shape
        k = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        rows = batch * h_out * w_out
        return {"forward": (rows, k, c_out), "input grad": (rows, c_out, k), "weight grad": (c_out, rows, k)}
    if isinstance(module, nn.ConvTranspose2d):
        batch, c_in, h_in, w_in = x.shape
        k = module.out_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        rows = batch * h_in * w_in
        return {"forward": (rows, c_in, k), "input grad": (rows, k, c_in), "weight grad": (c_in, rows, k)}
    if isinstance(module, nn.Linear):
        rows = x.numel() // module.in_features
        i, o = module.in_features, module.out_features
        return {"forward": (rows, i, o), "input grad": (rows, o, i), "weight grad": (o, rows, i)}
    return None


SHORT = {"encoder": "enc", "decoder": "dec", "latent_to_features": "feat", "discrete_heads": "disc"}


def _label(name: str, module: nn.Module, x: Tensor, y: Tensor) -> str:
    first, dot, rest = name.partition(".")
    name = SHORT.get(first, first.removesuffix("_head")) + dot + rest
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        kind = "deconv" if isinstance(module, nn.ConvTranspose2d) else "conv"
        return f"{name} {kind} {x.shape[1]}>{y.shape[1]} {y.shape[-1]}px"
    if isinstance(module, nn.Linear):
        return f"{name} linear {module.in_features}>{module.out_features}"
    return f"{name} {type(module).__name__.lower()}"


def _layer_calls(model: JointVAE, x: Tensor) -> list[tuple[str, nn.Module, Tensor, Tensor]]:
    """Each layer the encoder and decoder run on `x`, in order, with a copy of its input and its output."""
    calls: list[tuple[str, nn.Module, Tensor, Tensor]] = []
    handles = []
    for name, module in model.named_modules():
        timed = isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, *ELEMENTWISE))
        if timed and not list(module.children()):
            hook = lambda m, i, o, n=name: calls.append((n, m, i[0].detach().clone(), o.detach()))  # noqa: E731
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            posterior = model.encode(x)
            model.decode_logits(posterior.sample(1.0))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _layer_parts(
    calls: list[tuple[str, nn.Module, Tensor, Tensor]], peaks: Peaks, repeats: int, device: torch.device
) -> list[Part]:
    parts: list[Part] = []
    for index, (name, module, x_in, y_out) in enumerate(calls):
        # the first layer reads the images, which need no gradient
        passes = _layer_passes(module, x_in, needs_input=index > 0, repeats=repeats, device=device)
        label = _label(name, module, x_in, y_out)
        products = _products_of(module, x_in, y_out)
        for which, ms in passes:
            if products is not None:
                m, k, n = products[which]
                peak, peak_bf16 = peaks.product(m, k, n), peaks.product_bf16(m, k, n)
                parts.append(Part(label, which, ms, 2.0 * m * k * n, "GFLOP/s", peak, peak_bf16))
            else:
                moved = (2 if which == "forward" else 3) * y_out.numel() * y_out.element_size()
                parts.append(Part(label, which, ms, moved, "GB/s", peaks.copy(moved)))
    return parts


def _layer_passes(
    module: nn.Module, x_in: Tensor, *, needs_input: bool, repeats: int, device: torch.device
) -> list[tuple[str, float]]:
    """ms of `module`'s forward on a copy of its recorded input, and of each gradient its backward makes."""
    leaf = x_in.clone().requires_grad_(needs_input)
    weights: list[Tensor] = [p for p in module.parameters() if p.requires_grad]
    passes = [("forward", _median_ms(lambda h: module(h), lambda: leaf.clone(), repeats, device))]
    y = module(leaf.clone())  # a copy, so that in-place activations leave the leaf alone
    grad_out = torch.randn_like(y)
    wanted: list[tuple[str, list[Tensor]]] = ([("input grad", [leaf])] if needs_input else []) + (
        [("weight grad", weights)] if weights else []
    )
    for which, inputs in wanted:

        def gradient(_: object, inputs: list[Tensor] = inputs) -> object:
            return torch.autograd.grad(y, inputs, grad_out, retain_graph=True)

        passes.append((which, _median_ms(gradient, lambda: None, repeats, device)))
    return passes


class _Decoded(nn.Module):
    """The model seen by the loss with its decoder already run: the loss alone is timed."""

    def __init__(self, model: JointVAE, logits: Tensor) -> None:
        super().__init__()
        self.model, self.logits = model, logits

    def decode_logits(self, latent: Tensor) -> Tensor:
        return self.logits

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)


def _sampling_and_loss(
    stepper: Stepper, x: Tensor, step: int, repeats: int, device: torch.device
) -> list[Part]:
    model, preset = stepper.model, stepper.preset
    with torch.no_grad():
        posterior = model.encode(x)
        logits = model.decode_logits(posterior.sample(1.0))
    mean = posterior.mean.clone().requires_grad_(True)
    logvar = posterior.logvar.clone().requires_grad_(True)
    discrete = [logit.clone().requires_grad_(True) for logit in posterior.logits]
    leaves = [mean, logvar, *discrete]
    tau = temperature(preset.model, step)

    def leaf_posterior() -> Posterior:
        return Posterior(mean, logvar, discrete)

    noise = torch.Generator(device=device)
    noise.manual_seed(0)
    sample_ms = _median_ms(lambda p: p.sample(tau, noise), leaf_posterior, repeats, device)
    latent = leaf_posterior().sample(tau, noise)
    grad_latent = torch.randn_like(latent)
    sample_back = _median_ms(
        lambda _: torch.autograd.grad(latent, leaves, grad_latent, retain_graph=True, allow_unused=True),
        lambda: None,
        repeats,
        device,
    )
    decoded = logits.clone().requires_grad_(True)
    seen = cast(JointVAE, _Decoded(model, decoded))
    size = len(stepper.source)

    def loss(_: Any) -> Tensor:
        terms = model_objective(
            seen, x, leaf_posterior(), latent.detach(), step, preset.loss, dataset_size=size
        )
        return terms.loss

    loss_ms = _median_ms(loss, lambda: None, repeats, device)
    value = loss(None)
    loss_back = _median_ms(
        lambda _: torch.autograd.grad(value, [decoded, *leaves], retain_graph=True, allow_unused=True),
        lambda: None,
        repeats,
        device,
    )
    return [
        Part("sampling", "forward", sample_ms),
        Part("sampling", "input grad", sample_back),
        Part("loss", "forward", loss_ms),
        Part("loss", "input grad", loss_back),
    ]


def _optimizer_part(stepper: Stepper, peaks: Peaks, repeats: int, device: torch.device) -> Part:
    """Adam reads each parameter, its gradient and both moments and writes three back: 28 bytes a float."""
    count = sum(p.numel() for p in stepper.model.parameters() if p.grad is not None)
    ms = _median_ms(lambda _: stepper.optimizer.step(), lambda: None, repeats, device)
    moved = 28 * count
    return Part(f"optimizer {type(stepper.optimizer).__name__}", "step", ms, moved, "GB/s", peaks.copy(moved))


def _whole_steps(
    run: Callable[[int, Callable[[str], None]], object], steps: int, warmup: int, device: torch.device
) -> tuple[float, dict[str, float]]:
    """ms per whole step (median over `steps`) and each phase's median, as the trainer marks them."""
    phases: dict[str, list[float]] = {}
    totals: list[float] = []
    clock = {"last": 0.0}
    spent: dict[str, float] = {}

    def mark(phase: str) -> None:
        _sync(device)
        now = time.perf_counter()
        spent[phase] = spent.get(phase, 0.0) + now - clock["last"]
        clock["last"] = now

    for index in range(warmup + steps):
        spent.clear()
        _sync(device)
        started = clock["last"] = time.perf_counter()
        run(index, mark)
        _sync(device)
        if index >= warmup:
            totals.append(time.perf_counter() - started)
            for phase, seconds in spent.items():
                phases.setdefault(phase, []).append(seconds)
    return 1000 * statistics.median(totals), {k: 1000 * statistics.median(v) for k, v in phases.items()}


def check_profilable(preset: Preset) -> None:
    kind = kind_of(preset.loss)
    if kind.critic is not None or kind.labelled:
        raise UsageError(f"--layers profiles the VAE step alone; {kind.name} also trains a second network")


@pages_kept()
def profile_layers(
    preset: Preset,
    preset_name: str,
    source: ImageSource,
    device: torch.device,
    *,
    steps: int = 20,
    repeats: int = 10,
    warmup: int = 5,
    models: int | None = None,
    engine: str | None = None,
    status: Callable[[str], None] | None = None,
) -> Profile:
    """The profile of one training step of `preset` (see the module's docstring); with `models`, of a stack
    of that many models (its phases only). Freed memory stays with the process, as while training."""
    say = status or (lambda text: None)
    check_profilable(preset)
    batch = preset.train.batch_size
    if batch > len(source):
        raise UsageError(f"batch size {batch} is larger than the dataset ({len(source)} images)")
    peaks = Peaks(device, repeats)
    setting = bench_setting(
        preset_name, preset, source, device, batch, preset.train.precision,
        steps=steps, repeats=repeats, bf16_arithmetic=peaks.bf16,
    )  # fmt: skip
    if models is not None:
        from jvae.training.stacking import stack_steps

        say(f"whole steps of {models} stacked models")
        stacker = stack_steps([with_seed(preset, seed) for seed in range(models)], source, device, engine)
        try:
            step_ms, phases = _whole_steps(
                lambda index, mark: stacker.step_members(index, mark), steps, warmup, device
            )
        finally:
            stacker.close()
        setting.update(models=models, engine=stacker.engine)
        say("the machine's peak")
        return Profile(setting, [], step_ms, phases, peaks.square())
    stepper = Stepper.create(preset, source, device)
    stepper.model.train()
    say("whole steps as jvae train runs them")
    step_ms, phases = _whole_steps(lambda index, mark: stepper(index, mark), steps, warmup, device)
    x = stepper.batches(warmup + steps)[1]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=stepper.bf16):
        say("each layer's passes, and the same shapes' matrix products")
        parts = _layer_parts(_layer_calls(stepper.model, x), peaks, repeats, device)
        say("the sampling, the loss and the optimiser")
        parts += _sampling_and_loss(stepper, x, warmup + steps, repeats, device)
    parts.append(_optimizer_part(stepper, peaks, repeats, device))
    stepper.close()
    say("the machine's peak")
    return Profile(setting, parts, step_ms, phases, peaks.square())


def format_profile(profile: Profile) -> str:
    """The table `jvae bench --layers` prints, 80 columns wide. `of mm`: the part's rate over a float32
    product of its own shape (a copy of its size for memory-bound parts); `of peak`: over the best square
    product; `bf16 mm`: the bfloat16 product of its shape, GFLOP/s, where the CPU has bf16 arithmetic."""
    s = profile.setting
    square = profile.peak["float32"]
    stacked = f", {s['models']} stacked ({s['engine']})" if "models" in s else ""
    lines = [
        f"jvae bench --layers: {s['preset']} {s['image_size']}x{s['image_size']}, batch {s['batch_size']}"
        f"{stacked}, {s['device']}, {s['threads']} threads, {s['precision']}",
        f"peak, best square product: float32 {square:.0f}, bfloat16 {profile.peak['bfloat16']:.0f} GFLOP/s"
        + ("" if s["bf16_arithmetic"] else " (bf16 emulated)"),
    ]
    if profile.parts:
        lines.append(
            f"{'part':<25} {'pass':<11} {'ms':>7} {'rate':>11} {'of mm':>6} {'of peak':>7} {'bf16 mm':>7}"
        )
        for part in profile.parts:
            rate = f"{part.rate:.1f} {part.unit.replace('FLOP', 'F')}" if part.unit else ""
            of_mm = f"{100 * part.of_peak:.0f}%" if part.peak else ""
            of_peak = f"{100 * part.rate / square:.0f}%" if part.unit == "GFLOP/s" else ""
            bf16 = f"{part.peak_bf16:.0f}" if part.peak_bf16 else ""
            lines.append(
                f"{part.name[:25]:<25} {part.passes:<11} {part.ms:>7.3f} {rate:>11} {of_mm:>6} {of_peak:>7} "
                f"{bf16:>7}".rstrip()
            )
        flop = sum(p.work for p in profile.parts if p.unit == "GFLOP/s")
        lines.append(f"{'the parts above':<38} {profile.accounted_ms:>8.2f} ms")
        lines.append(
            f"{'the rest (autograd, framework)':<38} {profile.step_ms - profile.accounted_ms:>8.2f} ms"
        )
        achieved = flop / (profile.step_ms * 1e6)
        lines.append(
            f"{'whole step as jvae train runs it':<38} {profile.step_ms:>8.2f} ms, "
            f"{1000 * s['batch_size'] / profile.step_ms:.0f} images/s"
        )
        lines.append(
            f"  {flop / 1e6 / s['batch_size']:.1f} MFLOP an image: {achieved:.1f} GFLOP/s, "
            f"{100 * achieved / square:.0f}% of the float32 peak"
        )
    else:
        images = s["batch_size"] * s.get("models", 1)
        lines.append(
            f"{'whole step as jvae train runs it':<38} {profile.step_ms:>8.2f} ms, "
            f"{1000 * images / profile.step_ms:.0f} images/s"
        )
    lines.append("  phases: " + ", ".join(f"{phase} {ms:.2f} ms" for phase, ms in profile.phases.items()))
    return "\n".join(lines)
