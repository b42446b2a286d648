"""Digital baselines (spicenet.baselines): FLOP rules against a hand count, the VAE's ELBO and reconstructions, the
GAN's FID against an untrained generator, seeding, and the CLI's bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from spicenet.baselines.flops import count_flops, energy_per_sample
from spicenet.baselines.models import VAE, Generator, n_params
from spicenet.baselines.reference import analog_reference
from spicenet.baselines.train import BaselineConfig, _train_vae, heldout_elbo, load_data, reconstruction_bce, \
    sample_images, train


# -- FLOPs ---------------------------------------------------------------------------------------------------------
def test_flop_count_equals_a_hand_count():
    torch.manual_seed(0)
    stack = nn.Sequential(
        nn.Linear(3, 4),                                      # 2*3*4 + 4 bias                      =  28
        nn.ReLU(),                                            # 4 elements                          =   4
        nn.Unflatten(1, (1, 2, 2)),                           #                                     =   0
        nn.ConvTranspose2d(1, 2, 4, stride=2, padding=1),     # 2*1*2*4*4 * (2*2 in) + 2*4*4 bias   = 288
        nn.BatchNorm2d(2),                                    # 2 * (2*4*4)                         =  64
        nn.Conv2d(2, 1, 3, padding=1),                        # 2*2*3*3*1 * (4*4 out) + 16 bias     = 592
        nn.Sigmoid(),                                         # 16                                  =  16
        nn.Flatten(),
    )
    out = count_flops(stack, (3,))
    assert [r["flops"] for r in out["layers"]] == [28, 4, 0, 288, 64, 592, 16, 0]
    assert out["total"] == 992
    e = energy_per_sample(out["total"], 2e-12)
    assert e["energy_j"] == pytest.approx(992 * 2e-12) and "pJ/FLOP" in e["assumption"]


def test_flop_count_matches_torch_flop_counter_on_the_multiplies():
    """torch's own FlopCounterMode (2 FLOPs per multiply-add, no bias, no element-wise ops) on bias-free layers."""
    from torch.utils.flop_counter import FlopCounterMode

    stack = nn.Sequential(nn.Linear(16, 98, bias=False), nn.Unflatten(1, (2, 7, 7)),
                          nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.Conv2d(3, 1, 4, stride=2, padding=1, bias=False))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        stack(torch.zeros(1, 16))
    assert count_flops(stack, (16,))["total"] == counter.get_total_flops()


def test_flop_count_refuses_an_unknown_layer():
    with pytest.raises(ValueError, match="GELU"):
        count_flops(nn.Sequential(nn.Linear(2, 2), nn.GELU()), (2,))


# -- VAE -------------------------------------------------------------------------------------------------------------
def test_vae_elbo_improves_and_beats_the_pixel_mean_on_held_out_data():
    ref = analog_reference("dtm", quick=True)
    _, x, reference, value_range = load_data("fashion", 14, ref)
    assert value_range == "spin" and set(np.unique(reference)) == {-1.0, 1.0}
    x_test = torch.as_tensor((reference + 1.0) / 2.0)
    assert set(torch.unique(x).tolist()) == {0.0, 1.0}
    torch.manual_seed(0)
    cfg = BaselineConfig(iters=300, lr=1e-3)
    before = heldout_elbo(VAE(14, 8, cfg.z_dim), x_test, 0)
    torch.manual_seed(0)
    rows: list[dict] = []
    vae = _train_vae(x, x_test, cfg, 8, 0, _NoBar(), lambda it, **k: rows.append(k))["vae"].eval()
    after = heldout_elbo(vae, x_test, 0)
    assert after > before + 0.2 * abs(before)
    with torch.no_grad():
        rec = reconstruction_bce(vae.reconstruct(x_test), x_test)
    mean_bce = reconstruction_bce(x.mean(0, keepdim=True).expand_as(x_test), x_test)
    # the per-pixel mean is the best image-independent predictor: the latent must carry the image
    assert rec < 0.8 * mean_bce
    assert rows[-1]["neg_elbo_test_per_pixel"] == pytest.approx(-after / 196, rel=1e-6)


class _NoBar:
    def update(self, n: int) -> None: ...

    def set_postfix(self, **kw) -> None: ...


# -- GAN, seeding ------------------------------------------------------------------------------------------------------
def test_gan_fid_after_a_short_run_is_far_below_an_untrained_generator(tmp_path):
    from spicenet.metrics import image_metrics, load_feature_net

    res = train("gan", dataset="fashion", size=14, run_dir=tmp_path / "gan", quick=True, iters=200, progress=False)
    m = res["metrics"]
    assert m["encoding"] == "binary" and m["n_eval_samples"] == 500 and m["n_reference"] == 200
    # an untrained generator of the same size, scored by the test itself through the project's metric
    torch.manual_seed(123)
    blank = Generator(14, m["model"]["width"], m["model"]["z_dim"])
    _, _, reference, _ = load_data("fashion", 14, analog_reference("dtm", quick=True))
    net, _ = load_feature_net("fashion")
    fid_untrained = image_metrics(sample_images(blank, 500, 5, True).numpy(), reference, "fashion", net=net,
                                  value_range="spin", with_inception=False)["fid_spicenet_fashion"]
    assert m["fid_spicenet_fashion"] < 0.4 * fid_untrained
    assert m["fid_spicenet_fashion"] > m["fid_floor_train_vs_test"]
    assert m["model"]["n_params_generator"] == n_params(blank)
    # within 20 % of the DTM quick model's parameter count (T (E + N + D), counted independently here)
    assert m["compare"]["n_params"] == 4 * (18 * 18 * 8 // 2 + 18 * 18 + 14 * 14)
    assert abs(m["model"]["n_params_generator"] / m["compare"]["n_params"] - 1) < 0.2
    for name in ("samples.png", "loss_curves.png"):
        assert (tmp_path / "gan" / "plots" / name).stat().st_size > 1000
    on_disk = json.loads((tmp_path / "gan" / "metrics.json").read_text())
    assert on_disk["fid_spicenet_fashion"] == pytest.approx(m["fid_spicenet_fashion"])


_WALL = ("train_wall_s", "eval_wall_s", "wall_s", "plots")


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_same_seed_gives_identical_metrics(tmp_path, kind):
    runs = [train(kind, dataset="mnist", size=8, run_dir=tmp_path / f"r{k}", quick=True, iters=10, seed=s,
                  progress=False, plots=False)["metrics"] for k, s in enumerate((3, 3, 4))]
    a, b, c = ({k: v for k, v in r.items() if k not in _WALL} for r in runs)
    assert a["encoding"] == "grey" and a["compare"]["trainer"] == "ais"
    assert a == b
    assert a["fid_spicenet_mnist"] != c["fid_spicenet_mnist"]
    csv = [(tmp_path / f"r{k}" / "metrics.csv").read_text() for k in range(2)]
    assert csv[0] == csv[1]


# -- CLI -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["baseline", "gan", "--dataset", "cifar", "--size", "14"],
    ["baseline", "gmm", "--dataset", "mnist", "--size", "8"],
    ["baseline", "gan", "--dataset", "mnist", "--size", "9"],
    ["baseline", "gan", "--dataset", "mnist", "--size", "8", "--width", "0"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "--iters", "0"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "--seed", "-1"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "--compare", "eqprop"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "-o", "{tmp}/missing/run"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "-o", "{tmp}/full"],
    ["baseline", "vae", "--dataset", "mnist", "--size", "8", "-o", "{tmp}/file.txt"],
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv):
    from spicenet.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "other.txt").write_text("not a run")
    (tmp_path / "file.txt").write_text("x")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if "-o" not in argv:
        argv += ["-o", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(argv))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("spicenet baseline: error:"), err
    assert not (tmp_path / "run").exists()
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["other.txt"]


def test_reference_from_a_full_config_file_matches_that_run():
    """--compare-config: the reference is the given trainer config's network and protocol, not the shipped default
    (the 14x14 MNIST AIS config: 196 visible + 64 hidden + 1 reference rings, 8 segments, 1,429 FID samples)."""
    import tomllib

    path = Path(__file__).resolve().parents[1] / "training" / "ais_mnist_full.toml"
    toml = tomllib.loads(path.read_text())
    ref = analog_reference("ais", quick=False, config_path=str(path))
    n_osc = 14 * 14 + toml["model"]["n_hidden"] + 1
    segments = toml["model"]["n_segments"]
    assert ref.config_name == "ais_mnist_full" and ref.size == 14
    assert ref.n_eval_samples == toml["train"]["n_eval_samples"] == 1429
    assert ref.params_detail["oscillators"] == n_osc == 261
    assert ref.params_detail["shil_raw"] == ref.params_detail["bias_raw"] == n_osc * segments
    assert ref.params_detail["codes_raw"] == ref.params_detail["edges"] * segments
    assert ref.n_params > analog_reference("ais", quick=False).n_params  # the shipped default is the 8x8 network
