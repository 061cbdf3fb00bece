"""The paper's own network: the official 32x32 decoder, importing the authors' released models, and pretrained
models by name (official:NAME) fetched from a loopback server."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch
import torch.nn.functional as F

from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import FORMAT, Checkpoint, load_checkpoint
from jvae.modeling.presets import load_preset

ENCODER = {32: [32, 64, 64], 64: [32, 32, 64, 64]}
DECODER = {32: [64, 32, 32], 64: [64, 64, 32, 32]}


def official_state(size: int, channels: int, continuous: int, discrete: list[int], seed: int = 0) -> dict:
    """Random weights under the official code's module names and shapes (its README and appendix B)."""
    generator = torch.Generator().manual_seed(seed)

    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * 0.1

    state = {}
    encoder = [channels, *ENCODER[size]]
    for i, (c_in, c_out) in enumerate(zip(encoder[:-1], encoder[1:])):
        state[f"img_to_features.{2 * i}.weight"] = tensor(c_out, c_in, 4, 4)
        state[f"img_to_features.{2 * i}.bias"] = tensor(c_out)
    state["features_to_hidden.0.weight"], state["features_to_hidden.0.bias"] = tensor(256, 1024), tensor(256)
    for head in ("fc_mean", "fc_log_var"):
        state[f"{head}.weight"], state[f"{head}.bias"] = tensor(continuous, 256), tensor(continuous)
    for i, k in enumerate(discrete):
        state[f"fc_alphas.{i}.weight"], state[f"fc_alphas.{i}.bias"] = tensor(k, 256), tensor(k)
    latent = continuous + sum(discrete)
    state["latent_to_features.0.weight"], state["latent_to_features.0.bias"] = (
        tensor(256, latent),
        tensor(256),
    )
    state["latent_to_features.2.weight"], state["latent_to_features.2.bias"] = tensor(1024, 256), tensor(1024)
    decoder = [*DECODER[size], channels]
    for i, (c_in, c_out) in enumerate(zip(decoder[:-1], decoder[1:])):
        state[f"features_to_img.{2 * i}.weight"] = tensor(c_in, c_out, 4, 4)  # transposed: (in, out, k, k)
        state[f"features_to_img.{2 * i}.bias"] = tensor(c_out)
    return state


def official_forward(state: dict, x: torch.Tensor, discrete: list[int]):
    """The official network's evaluation pass, written from its layer list: means, log-variances, category
    probabilities, and the image decoded from [means, one-hot argmax]."""
    h = x
    convs = sorted({int(k.split(".")[1]) for k in state if k.startswith("img_to_features.")})
    for i in convs:
        h = F.relu(
            F.conv2d(h, state[f"img_to_features.{i}.weight"], state[f"img_to_features.{i}.bias"], 2, 1)
        )
    h = F.relu(
        F.linear(
            h.reshape(x.shape[0], -1),
            state["features_to_hidden.0.weight"],
            state["features_to_hidden.0.bias"],
        )
    )
    mean = F.linear(h, state["fc_mean.weight"], state["fc_mean.bias"])
    logvar = F.linear(h, state["fc_log_var.weight"], state["fc_log_var.bias"])
    alphas = [
        F.softmax(F.linear(h, state[f"fc_alphas.{i}.weight"], state[f"fc_alphas.{i}.bias"]), dim=1)
        for i in range(len(discrete))
    ]
    one_hots = [F.one_hot(a.argmax(dim=1), k).float() for a, k in zip(alphas, discrete)]
    f = torch.cat([mean, *one_hots], dim=1)
    f = F.relu(F.linear(f, state["latent_to_features.0.weight"], state["latent_to_features.0.bias"]))
    f = F.relu(F.linear(f, state["latent_to_features.2.weight"], state["latent_to_features.2.bias"]))
    f = f.view(-1, 64, 4, 4)
    deconvs = sorted({int(k.split(".")[1]) for k in state if k.startswith("features_to_img.")})
    for n, i in enumerate(deconvs):
        f = F.conv_transpose2d(
            f, state[f"features_to_img.{i}.weight"], state[f"features_to_img.{i}.bias"], 2, 1
        )
        f = torch.sigmoid(f) if n == len(deconvs) - 1 else F.relu(f)
    return mean, logvar, alphas, f


def write_release(folder, state: dict, specs: dict) -> None:
    """An official trained_models/<name>/ folder, saved the way the authors did (pre-1.6 serialisation)."""
    folder.mkdir(parents=True)
    torch.save(state, folder / "model.pt", _use_new_zipfile_serialization=False)
    (folder / "specs.json").write_text(json.dumps(specs))


def specs_for(dataset: str, continuous: int, discrete: list[int]) -> dict:
    return {
        "cont_capacity": [0.0, 5.0, 25000, 30.0],
        "disc_capacity": [0.0, 5.0, 25000, 30.0],
        "record_loss_every": 50,
        "batch_size": 64,
        "latent_spec": {"disc": discrete, "cont": continuous},
        "epochs": [100, 101, 102],
        "experiment_name": "test",
        "lr": [0.0005],
        "print_loss_every": 50,
        "dataset": dataset,
    }


def test_the_32x32_decoder_is_the_papers_not_the_encoders_mirror():
    _, preset = load_preset("mnist")
    model = build_model(preset)
    shapes = [tuple(m.weight.shape) for m in model.decoder if hasattr(m, "weight")]
    assert shapes == [(64, 32, 4, 4), (32, 32, 4, 4), (32, 1, 4, 4)]  # ConvTranspose2d weights are (in, out)
    _, preset = load_preset("quickstart")
    shapes = [tuple(m.weight.shape) for m in build_model(preset).decoder if hasattr(m, "weight")]
    assert shapes == [(64, 64, 4, 4), (64, 32, 4, 4), (32, 32, 4, 4), (32, 1, 4, 4)]


@pytest.mark.parametrize(
    ("dataset", "size", "channels", "continuous", "discrete"),
    [("mnist", 32, 1, 10, [10]), ("celeba", 64, 3, 5, [2, 3])],
)
def test_official_weights_import_and_give_the_official_networks_outputs(
    cli, tmp_path, dataset, size, channels, continuous, discrete
):
    state = official_state(size, channels, continuous, discrete)
    write_release(tmp_path / "release", state, specs_for(dataset, continuous, discrete))
    ckpt = tmp_path / "imported.pt"
    result = cli("import", "official", tmp_path / "release", "--out", ckpt)
    assert result.exit_code == 0, result.output

    loaded = load_checkpoint(ckpt)
    preset, imported = loaded.preset, loaded.checkpoint.imported
    assert (preset.data.image_size, preset.data.channels, preset.model.continuous) == (
        size,
        channels,
        continuous,
    )
    assert preset.model.discrete == discrete and preset.loss.kind == "jointvae"
    assert preset.loss.continuous_capacity.stop == 5.0 and preset.loss.continuous_capacity.gamma == 30.0
    assert preset.train.lr == 0.0005 and preset.train.batch_size == 64 and preset.train.epochs == 100
    assert preset.loss.reconstruction == ("bce-official" if channels == 3 else "bce-sum")
    digest = hashlib.sha256((tmp_path / "release" / "model.pt").read_bytes()).hexdigest()
    assert imported["sha256"] == digest and imported["specs"]["dataset"] == dataset

    x = torch.rand(6, channels, size, size, generator=torch.Generator().manual_seed(1))
    mean, logvar, alphas, image = official_forward(state, x, discrete)
    with torch.no_grad():
        posterior = loaded.model.encode(x)
        decoded = loaded.model.decode(posterior.mode())
    torch.testing.assert_close(posterior.mean, mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(posterior.logvar, logvar, rtol=1e-5, atol=1e-5)
    for ours, theirs in zip(posterior.probs, alphas):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(decoded, image, rtol=1e-5, atol=1e-5)

    traversal = tmp_path / "t.gif"
    assert cli("traverse", ckpt, "--all", "--out", traversal).exit_code == 0 and traversal.is_file()
    result = cli("train", "--resume", tmp_path)
    assert result.exit_code == 1  # an imported model is not a run folder to continue


def test_broken_releases_are_one_line_errors(cli, tmp_path):
    state = official_state(32, 1, 10, [10])
    specs = specs_for("mnist", 10, [10])

    def attempt(folder) -> str:
        result = cli("import", "official", folder, "--out", tmp_path / f"{folder.name}.pt")
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert not (tmp_path / f"{folder.name}.pt").exists()
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        return lines[0]

    assert "not a folder" in attempt(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "no specs.json" in attempt(tmp_path / "empty")

    write_release(tmp_path / "malformed", state, specs)
    (tmp_path / "malformed" / "specs.json").write_text("{not json")
    assert "not valid JSON" in attempt(tmp_path / "malformed")

    write_release(tmp_path / "nolatents", state, {k: v for k, v in specs.items() if k != "latent_spec"})
    assert "missing 'latent_spec'" in attempt(tmp_path / "nolatents")

    write_release(tmp_path / "capacity", state, {**specs, "cont_capacity": [0, 5]})
    assert "cont_capacity must be [start, stop, steps, gamma]" in attempt(tmp_path / "capacity")

    write_release(tmp_path / "dataset", state, {**specs, "dataset": "imagenet"})
    assert "dataset 'imagenet'" in attempt(tmp_path / "dataset")

    write_release(tmp_path / "extra", {**state, "fc_extra.weight": torch.zeros(3)}, specs)
    assert "unexpected key 'fc_extra.weight'" in attempt(tmp_path / "extra")

    write_release(tmp_path / "shape", state, {**specs, "latent_spec": {"disc": [10], "cont": 8}})
    assert "fc_mean.weight has shape (10, 256)" in attempt(tmp_path / "shape")

    # the old mirrored 32x32 decoder (64->64 first) does not pass for the official one
    mirrored = {**state, "features_to_img.0.weight": torch.zeros(64, 64, 4, 4)}
    mirrored["features_to_img.0.bias"] = torch.zeros(64)
    write_release(tmp_path / "mirror", mirrored, specs)
    assert "features_to_img.0.weight has shape (64, 64, 4, 4)" in attempt(tmp_path / "mirror")

    partial = {k: v for k, v in state.items() if not k.startswith("fc_alphas")}
    write_release(tmp_path / "partial", partial, specs)
    assert "no weights for discrete_heads.0" in attempt(tmp_path / "partial")

    write_release(tmp_path / "garbage", state, specs)
    (tmp_path / "garbage" / "model.pt").write_bytes(os.urandom(3000))
    assert "damaged or not a PyTorch state dict" in attempt(tmp_path / "garbage")

    marker = tmp_path / "code-ran"

    class Planted:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    write_release(tmp_path / "evil", state, specs)
    torch.save({"x": Planted()}, tmp_path / "evil" / "model.pt")
    assert "refused" in attempt(tmp_path / "evil") and not marker.exists()


def test_old_format_32x32_checkpoints_are_refused_with_what_to_do(cli, tmp_path):
    name, preset = load_preset("digits")
    model = build_model(preset)
    old = {k: v for k, v in model.state_dict().items() if not k.startswith("decoder.")}
    for i, (c_in, c_out) in enumerate([(64, 64), (64, 32), (32, 1)]):  # the old mirrored decoder
        old[f"decoder.{2 * i}.weight"], old[f"decoder.{2 * i}.bias"] = (
            torch.zeros(c_in, c_out, 4, 4),
            torch.zeros(c_out),
        )
    payload = Checkpoint.new(name, preset, old, step=10).to_payload()
    payload.update(format_version=1)
    assert payload["format"] == FORMAT
    torch.save(payload, tmp_path / "old.pt")
    for args in (
        ["units", tmp_path / "old.pt"],
        ["traverse", tmp_path / "old.pt", "--all", "--out", tmp_path / "t.gif"],
    ):
        result = cli(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert "older jvae whose 32x32 decoder was 64->64, 64->32, 32->C" in result.stderr
        assert "retrain with jvae train --preset digits" in result.stderr
    assert not (tmp_path / "t.gif").exists()


@pytest.fixture
def released_mnist(tmp_path, monkeypatch):
    """A release served under the official layout, with official:mnist's pins set to its checksums."""
    from jvae.use import pretrained

    folder = tmp_path / "served"
    write_release(folder, official_state(32, 1, 10, [10], seed=3), specs_for("mnist", 10, [10]))
    files = {name: (folder / name).read_bytes() for name in ("model.pt", "specs.json")}
    pinned = pretrained.Released(
        "mnist",
        hashlib.sha256(files["model.pt"]).hexdigest(),
        hashlib.sha256(files["specs.json"]).hexdigest(),
        "test release",
        {"d0": "digit"},
    )
    monkeypatch.setitem(pretrained.RELEASED, "mnist", pinned)
    monkeypatch.setenv("JVAE_CACHE", str(tmp_path / "cache"))
    return files, pinned


def test_pretrained_names_download_verify_convert_and_cache(
    cli, server, tmp_path, monkeypatch, released_mnist
):
    base, payloads = server
    files, _ = released_mnist
    monkeypatch.setenv("JVAE_PRETRAINED_URL", base + "/nowhere")
    result = cli("units", "official:mnist")
    assert result.exit_code == 1 and "(Not Found)" in result.stderr
    assert "put model.pt and specs.json from" in result.stderr and "Traceback" not in result.output

    payloads.update({f"/mnist/{name}": body for name, body in files.items()})
    monkeypatch.setenv("JVAE_PRETRAINED_URL", base + "/cut")
    result = cli("units", "official:mnist")
    assert result.exit_code == 1 and "stopped after" in result.stderr
    cached = tmp_path / "cache" / "pretrained"
    assert not (cached / "official" / "mnist" / "model.pt").exists()

    monkeypatch.setenv("JVAE_PRETRAINED_URL", base)
    result = cli("pretrained", "--json")
    assert {"name": "official:mnist", "cached": False} | {} == {
        k: v for k, v in json.loads(result.stdout)[0].items() if k in ("name", "cached")
    }
    result = cli("units", "official:mnist", "--json")
    assert result.exit_code == 0, result.output
    units = json.loads(result.stdout)
    assert {u["unit"]: u["name"] for u in units["units"]}["d0"] == "digit"
    assert units["kl_source"] == "the model's own samples (1024)"
    assert json.loads(cli("pretrained", "--json").stdout)[0]["cached"] is True

    payloads.clear()  # offline from now on: the cache serves every command
    out = tmp_path / "digits.gif"
    result = cli("traverse", "official:mnist", "--unit", "digit", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_file()
    assert load_checkpoint(cached / "official-mnist.pt").checkpoint.imported["name"] == "mnist"

    result = cli("units", "official:nosuch")
    assert result.exit_code == 1 and "unknown pretrained model 'official:nosuch'" in result.stderr


def test_a_pretrained_download_with_the_wrong_checksum_keeps_nothing(
    cli, server, tmp_path, monkeypatch, released_mnist
):
    from jvae.use import pretrained

    base, payloads = server
    files, pinned = released_mnist
    payloads.update({f"/mnist/{name}": body for name, body in files.items()})
    monkeypatch.setitem(
        pretrained.RELEASED,
        "mnist",
        pretrained.Released("mnist", "0" * 64, pinned.specs_sha256, "test", {}),
    )
    monkeypatch.setenv("JVAE_PRETRAINED_URL", base)
    result = cli("sample", "official:mnist", "--out", tmp_path / "s.png")
    assert result.exit_code == 1 and f"expected {'0' * 64}: not the published file" in result.stderr
    folder = tmp_path / "cache" / "pretrained"
    assert not (folder / "official" / "mnist" / "model.pt").exists()
    assert not (folder / "official-mnist.pt").exists() and not (tmp_path / "s.png").exists()
