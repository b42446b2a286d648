"""``spicenet baseline {gan,vae}``: train a digital baseline on the analog trainer's data and score it the same way.

Data: ``spicenet.data.load_dataset`` with the source / split of the compared trainer's config
(:mod:`spicenet.baselines.reference`); binarized (``spin``, fed to the networks as {0, 1}) beside a DTM, grey
levels in [0, 1] beside AIS. Minibatches: ``batch`` indices drawn with replacement per iteration from a generator
seeded by ``seed`` (the DTM trainer's scheme).

* GAN: non-saturating GAN loss (Goodfellow et al. 2014), L_D = -E log D(x) - E log(1 - D(G(z))),
  L_G = -E log D(G(z)), Adam (lr, betas 0.5 / 0.999) on both; D sees the generator's pixel probabilities.
* VAE: maximise the ELBO (``models.VAE``) with Adam; logged per pixel in nats.

Evaluation (the analog trainers' own metric): ``n_eval_samples`` generated images, binarized ones as {-1, +1}
spins against the trainer's held-out spins (``value_range="spin"``, as ``spicenet train dtm``), grey ones against
its grey test images (``value_range="unit"``, as ``spicenet train ais``), through
``spicenet.metrics.image_metrics`` with the project's feature net: ``fid_spicenet_<dataset>`` (not Inception).
Also the floor FID(train images, test images), the FID of the untrained generator (same latents) and for the VAE
the held-out ELBO, reconstruction cross-entropy and that of the per-pixel training mean.

Energy per generated sample on a digital accelerator: ``flops.count_flops`` of the generator (with its output
sigmoid) x ``flops.E_FLOP_J`` (an assumption, stated in the metrics).

Run directory (``spicenet.train.RunDir``): run.json (``family`` "baseline"), config.json, metrics.csv (losses per
``log_every``), plots/samples.png (64 generated images), plots/loss_curves.png, metrics.json, model.pt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor, nn

from spicenet import seeds
from spicenet.baselines.flops import count_flops, energy_per_sample
from spicenet.baselines.models import SIZES, VAE, Discriminator, Generator, matched_width, n_params
from spicenet.baselines.reference import AnalogReference, analog_reference, comparable
from spicenet.errors import ConfigError
from spicenet.train.threads import restores_torch_threads

__all__ = ["KINDS", "BaselineConfig", "default_compare", "load_data", "sample_images", "evaluate", "train"]

KINDS = ("gan", "vae")


@dataclass(frozen=True)
class BaselineConfig:
    """Training settings of a baseline (``--quick`` or the full defaults; ``iters`` overridable)."""

    iters: int
    batch: int = 64
    lr: float = 1e-3
    z_dim: int = 16
    log_every: int = 50
    threads: int = 1

    def __post_init__(self) -> None:
        for name, ok in {"iters": self.iters >= 1, "batch": self.batch >= 1, "lr": self.lr > 0,
                         "z_dim": self.z_dim >= 1, "log_every": self.log_every >= 1, "threads": self.threads >= 1}.items():
            if not ok:
                raise ConfigError(f"baseline: {name} = {getattr(self, name)!r} is out of range")

    @classmethod
    def preset(cls, kind: str, quick: bool, iters: int | None = None) -> "BaselineConfig":
        """The quick (2,000 iterations) or full (20,000) settings of ``kind``; ``iters`` overrides."""
        n = iters if iters is not None else (2000 if quick else 20000)
        return cls(iters=n, lr=5e-4 if kind == "gan" else 1e-3)


def default_compare(dataset: str) -> str:
    """The analog generator a dataset is compared with by default: the comparable trainer that declares the
    dataset in its ``baseline_datasets`` (the one whose quick config trains on it; Fashion-MNIST:
    ``spicenet train dtm --quick``; MNIST: ``spicenet train ais --quick``)."""
    from spicenet.data import canonical_name

    name = canonical_name(dataset)
    found = comparable()
    for trainer, (_, spec) in found.items():
        if name in spec.baseline_datasets:
            return trainer
    raise ConfigError(f"baseline: no trainer is the default comparison for {name!r}; give --compare "
                      f"({', '.join(found) or 'none registered'})")


def load_data(dataset: str, size: int, ref: AnalogReference):
    """The dataset as the compared trainer loads it: (Dataset, train images [N, S*S] in [0, 1] float32,
    FID reference [M, ...] in the trainer's encoding, value_range for ``image_metrics``)."""
    from spicenet.data import load_dataset

    binary = ref.encoding == "binary"
    try:
        ds = load_dataset(dataset, ref.source, size=size, encoding="spin" if binary else "float",
                          n_train=ref.n_train, n_test=ref.n_test)
    except (ValueError, FileNotFoundError) as exc:
        raise ConfigError(f"baseline: cannot load {dataset!r} from {ref.source!r}: {exc}") from None
    x = ds.flat("train").astype(np.float32)
    x_train = torch.as_tensor((x + 1.0) / 2.0 if binary else x)
    reference = ds.flat("test").astype(np.float32) if binary else np.asarray(ds.x_test, dtype=np.float32)
    return ds, x_train, reference, "spin" if binary else "unit"


def sample_images(gen: Generator, n: int, seed: int, binary: bool) -> Tensor:
    """n images [n, S*S] from ``gen`` (eval mode; latents and Bernoulli draws seeded by ``seed``): binary ones
    as {-1, +1} spins (a Bernoulli draw of every pixel probability), grey ones as the probabilities in [0, 1]."""
    g = torch.Generator().manual_seed(int(seed))
    was = gen.training
    gen.eval()
    try:
        with torch.no_grad():
            p = torch.sigmoid(gen(gen.latent(n, g)))
    finally:
        gen.train(was)
    if binary:
        return 2.0 * (torch.rand(p.shape, generator=g) < p).float() - 1.0
    return p


def evaluate(gen: Generator, reference: np.ndarray, dataset: str, n_samples: int, seed: int, value_range: str,
             net: Any) -> tuple[dict[str, Any], Tensor]:
    """``spicenet.metrics.image_metrics`` of ``n_samples`` generated images against ``reference``, called as the
    analog trainers call it; returns (metrics, images)."""
    from spicenet.metrics import image_metrics

    imgs = sample_images(gen, n_samples, seed, value_range == "spin")
    if value_range == "unit":
        imgs = imgs.reshape(-1, gen.size, gen.size)
    m = image_metrics(imgs.numpy(), reference, dataset, net=net, value_range=value_range, seed=int(seed),
                      with_inception=False)
    return m, imgs


def _batches(n: int, cfg: BaselineConfig, seed: int, it: int) -> Tensor:
    g = seeds.torch_generator(seed, seeds.BASELINE_BATCH, it)
    return torch.randint(0, n, (cfg.batch,), generator=g)


def _train_gan(x: Tensor, cfg: BaselineConfig, width: int, seed: int, bar: Any, log: Any) -> dict[str, nn.Module]:
    size = int(round(math.sqrt(x.shape[1])))
    gen, disc = Generator(size, width, cfg.z_dim), Discriminator(size, width)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(0.5, 0.999))
    bce = nn.functional.binary_cross_entropy_with_logits
    g_lat = torch.Generator().manual_seed(int(seed) + 1)
    window: list[tuple[float, float]] = []
    for it in range(cfg.iters):
        real = x[_batches(x.shape[0], cfg, seed, it)]
        fake = torch.sigmoid(gen(gen.latent(cfg.batch, g_lat)))
        d_real, d_fake = disc(real), disc(fake.detach())
        loss_d = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        d_gen = disc(fake)
        loss_g = bce(d_gen, torch.ones_like(d_gen))
        opt_g.zero_grad()
        loss_g.backward()
        opt_g.step()
        window.append((loss_d.item(), loss_g.item()))
        bar.update(1)
        if (it + 1) % cfg.log_every == 0 or it + 1 == cfg.iters:
            a = np.asarray(window)
            log(it + 1, loss_discriminator=float(a[:, 0].mean()), loss_generator=float(a[:, 1].mean()))
            bar.set_postfix(d=f"{a[:, 0].mean():.3f}", g=f"{a[:, 1].mean():.3f}")
            window = []
    return {"generator": gen, "discriminator": disc}


def _train_vae(x: Tensor, x_test: Tensor, cfg: BaselineConfig, width: int, seed: int, bar: Any,
               log: Any) -> dict[str, nn.Module]:
    size = int(round(math.sqrt(x.shape[1])))
    vae = VAE(size, width, cfg.z_dim)
    opt = torch.optim.Adam(vae.parameters(), lr=cfg.lr)
    g_eps = torch.Generator().manual_seed(int(seed) + 1)
    d = x.shape[1]
    window: list[tuple[float, float, float]] = []
    for it in range(cfg.iters):
        elbo, rec, kl = vae.elbo(x[_batches(x.shape[0], cfg, seed, it)], g_eps)
        loss = -elbo.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        window.append((loss.item() / d, -rec.mean().item() / d, kl.mean().item() / d))
        bar.update(1)
        if (it + 1) % cfg.log_every == 0 or it + 1 == cfg.iters:
            a = np.asarray(window)
            log(it + 1, loss_neg_elbo_per_pixel=float(a[:, 0].mean()), loss_reconstruction_per_pixel=float(a[:, 1].mean()),
                kl_per_pixel=float(a[:, 2].mean()), neg_elbo_test_per_pixel=heldout_elbo(vae, x_test, seed) * -1.0 / d)
            bar.set_postfix(nelbo=f"{a[:, 0].mean():.4f}")
            window = []
    return {"vae": vae, "generator": vae.decoder}


def heldout_elbo(vae: VAE, x: Tensor, seed: int) -> float:
    """Mean ELBO [nats per image] of ``vae`` on ``x`` (eval mode, one z per image seeded by ``seed``)."""
    was = vae.training
    vae.eval()
    try:
        with torch.no_grad():
            return float(vae.elbo(x, torch.Generator().manual_seed(int(seed) + 7))[0].mean())
    finally:
        vae.train(was)


def reconstruction_bce(p: Tensor, x: Tensor) -> float:
    """Mean binary cross-entropy [nats per pixel] of pixel probabilities ``p`` for images ``x`` in [0, 1]."""
    return float(nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), x))


def _loss_plot(run: Any) -> Path:
    """plots/loss_curves.png: every logged column against the training iteration."""
    from spicenet.train.plots import plot_curves

    rows = run.read_metrics()
    keys = [k for k in rows[0] if k != "epoch"]
    return plot_curves([r["epoch"] for r in rows], {k: [r.get(k) for r in rows] for k in keys},
                       run.plots / "loss_curves.png", xlabel="iteration")


def _checked_compare(kind: str, dataset: str, size: int, compare: str | None, width: int | None) -> str:
    """The compared analog trainer (``compare`` or :func:`default_compare`), after checking the arguments in the
    order the command line names them; any bad one is a ConfigError."""
    if kind not in KINDS:
        raise ConfigError(f"baseline: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if size not in SIZES:
        raise ConfigError(f"baseline: --size must be one of {SIZES}, got {size!r}")
    compare = compare or default_compare(dataset)
    if compare not in comparable():
        raise ConfigError(f"baseline: --compare must be one of {', '.join(comparable())}, got {compare!r}")
    if width is not None and width < 1:
        raise ConfigError(f"baseline: --width must be >= 1, got {width}")
    return compare


def _open_run(run_dir: Path | str, cfg: BaselineConfig, kind: str, compare: str, width: int, seed: int,
              quick: bool, dataset_info: dict[str, Any]) -> Any:
    """A fresh run directory (no resume) with its run.json marked family "baseline", trainer ``kind``."""
    from spicenet.train import RunDir
    from spicenet.train.run import _atomic_write_text

    run = RunDir.create(run_dir, dataclasses.asdict(cfg) | {"kind": kind, "compare": compare, "width": width,
                                                            "seed": seed, "quick": quick},
                        seed=seed, dataset=dataset_info, resume=False, length_key="iters")
    meta = run.meta()
    meta.update({"family": "baseline", "trainer": kind, "quick": bool(quick)})
    _atomic_write_text(run.path / "run.json", json.dumps(meta, indent=2, default=str))
    return run


def _fit(kind: str, x_train: Tensor, x_test: Tensor, cfg: BaselineConfig, width: int, seed: int, progress: bool,
         log: Any) -> dict[str, nn.Module]:
    """Train the GAN or VAE of ``kind`` under a progress bar; returns its modules by name."""
    from spicenet.progress import progress_bar

    bar = progress_bar(cfg.iters, f"baseline {kind}", enabled=progress)
    if kind == "gan":
        models = _train_gan(x_train, cfg, width, seed, bar, log)
    else:
        models = _train_vae(x_train, x_test, cfg, width, seed, bar, log)
    bar.close()
    return models


@dataclass
class _Scores:
    """The trained generator scored as the analog trainer is: own-net metrics of its samples (``nominal``) and of
    the untrained generator on the same latents, the real-data floor FID(train, test), the generated images, and
    the FLOPs [per sample] and energy [J per sample] of one generation."""

    nominal: dict[str, Any]
    untrained: dict[str, Any]
    floor: float
    imgs: Tensor
    flops: dict[str, Any]
    energy: dict[str, Any]


def _score(gen: Generator, untrained: Generator, x_train: Tensor, reference: np.ndarray, name: str,
           ref: AnalogReference, value_range: str, net: Any, seed: int, size: int, z_dim: int) -> _Scores:
    """:class:`_Scores` of ``gen`` (``ref.n_eval_samples`` images per FID, latents from ``seed + 1000``)."""
    from spicenet.metrics import fid_key, image_metrics

    key = fid_key(name)
    binary = value_range == "spin"
    nominal, imgs = evaluate(gen, reference, name, ref.n_eval_samples, seed + 1000, value_range, net)
    untrained_m, _ = evaluate(untrained, reference, name, ref.n_eval_samples, seed + 1000, value_range, net)
    floor_imgs = (2.0 * x_train - 1.0 if binary else x_train.reshape(-1, size, size))[: ref.n_eval_samples]
    floor = image_metrics(floor_imgs.numpy(), reference, name, net=net, value_range=value_range, seed=int(seed),
                          with_inception=False)[key]
    flops = count_flops(nn.Sequential(gen.net, nn.Sigmoid()), (z_dim,))
    return _Scores(nominal, untrained_m, floor, imgs, flops, energy_per_sample(flops["total"]))


def _model_info(kind: str, models: dict[str, nn.Module], width: int, z_dim: int) -> dict[str, Any]:
    """metrics' ``model``: width, latent size and parameter counts (the generator, the training-only
    discriminator / encoder)."""
    n_gen = n_params(models["generator"])
    n_aux = n_params(models["discriminator"] if kind == "gan"
                     else cast(VAE, models["vae"]).encoder)  # training-only part
    return {"width": width, "z_dim": z_dim, "n_params_generator": n_gen,
            "n_params_training_only": n_aux, "n_params_total": n_gen + n_aux,
            "training_only": "discriminator" if kind == "gan" else "encoder"}


def _metrics(kind: str, name: str, sc: _Scores, ref: AnalogReference, model: dict[str, Any], n_reference: int,
             dataset_info: dict[str, Any], iters: int) -> dict[str, Any]:
    """metrics.json's scores, comparison, model and energy keys (the wall times and plots are added after)."""
    from spicenet.metrics import fid_key

    key = fid_key(name)
    return {
        key: float(sc.nominal[key]),
        f"kid_spicenet_{name}": float(sc.nominal[f"kid_spicenet_{name}"]),
        "fid_note": "spicenet's own 64-d feature net (spicenet.metrics.features), NOT Inception",
        "fid_untrained": float(sc.untrained[key]),
        "fid_floor_train_vs_test": float(sc.floor),
        "n_eval_samples": ref.n_eval_samples,
        "n_reference": n_reference,
        "kind": kind,
        "compare": {"trainer": ref.compare, "config": ref.config_name, "n_params": ref.n_params,
                    "params": ref.params_detail, "dataset": ref.dataset, "size": ref.size},
        "encoding": ref.encoding,
        "model": model,
        "flops_per_sample": sc.flops["total"],
        "flops_layers": sc.flops["layers"],
        "energy_per_sample_j": sc.energy["energy_j"],
        "energy": sc.energy,
        "dataset": dataset_info,
        "iters": iters,
    }


def _vae_metrics(vae: VAE, x_train: Tensor, x_test: Tensor, seed: int) -> dict[str, Any]:
    """metrics' ``vae``: held-out ELBO [nats per image], reconstruction cross-entropy and that of the per-pixel
    training mean [nats per pixel]."""
    vae.eval()
    with torch.no_grad():
        rec = reconstruction_bce(vae.reconstruct(x_test), x_test)
    mean_p = x_train.mean(0, keepdim=True).expand_as(x_test)
    return {"elbo_test_nats": heldout_elbo(vae, x_test, seed),
            "reconstruction_bce_test_per_pixel": rec,
            "pixel_mean_bce_test_per_pixel": reconstruction_bce(mean_p, x_test)}


def _save_model(run: Any, kind: str, models: dict[str, nn.Module], size: int, width: int, z_dim: int,
                encoding: str, name: str) -> None:
    """model.pt: the modules' states (the VAE's decoder inside ``vae``) and what rebuilds them."""
    saved = {k: m for k, m in models.items() if not (kind == "vae" and k == "generator")}  # the decoder is in vae
    torch.save({"kind": kind, "state": {k: m.state_dict() for k, m in saved.items()}, "size": size, "width": width,
                "z_dim": z_dim, "encoding": encoding, "dataset": name}, run.path / "model.pt")


@restores_torch_threads
def train(kind: str, *, dataset: str, size: int, run_dir: Path | str, quick: bool = False, seed: int = 0,
          compare: str | None = None, width: int | None = None, iters: int | None = None,
          progress: bool = True, plots: bool = True, compare_config: str | None = None) -> dict[str, Any]:
    """Train baseline ``kind`` ("gan" / "vae") on ``dataset`` at ``size`` px into ``run_dir``; returns
    ``{"run_dir", "metrics"}``. ``compare`` ("dtm" / "ais", default :func:`default_compare`) names the analog
    trainer whose (quick) config gives the data split, encoding, FID sample count and the parameter count the
    generator's ``width`` is matched to (unless ``width`` is given); ``compare_config``: that trainer's config file
    instead of its shipped one (a full config). ``plots=False`` skips the PNGs."""
    from spicenet.metrics import load_feature_net

    t0 = time.perf_counter()
    compare = _checked_compare(kind, dataset, size, compare, width)
    cfg = BaselineConfig.preset(kind, quick, iters)
    torch.set_num_threads(cfg.threads)
    ref = analog_reference(compare, quick, seed, compare_config)
    ds, x_train, reference, value_range = load_data(dataset, size, ref)
    binary = ref.encoding == "binary"
    w = width if width is not None else matched_width(size, ref.n_params, cfg.z_dim, batch_norm=kind == "gan")
    dataset_info = ds.summary() | {"encoding_for_networks": "binary {0,1} (threshold 127)" if binary
                                   else "grey [0,1]", "source": ref.source}
    run = _open_run(run_dir, cfg, kind, compare, w, seed, quick, dataset_info)

    torch.manual_seed(int(seed))  # module initialisation
    x_test = torch.as_tensor((reference.reshape(reference.shape[0], -1) + 1.0) / 2.0 if binary
                             else reference.reshape(reference.shape[0], -1))
    net, _ = load_feature_net(ds.name, train_if_missing=True)
    untrained = Generator(size, w, cfg.z_dim, batch_norm=kind == "gan")
    models = _fit(kind, x_train, x_test, cfg, w, seed, progress, run.log_metrics)
    t_train = time.perf_counter() - t0

    t1 = time.perf_counter()
    sc = _score(cast(Generator, models["generator"]), untrained, x_train, reference, ds.name, ref, value_range, net,
                seed, size, cfg.z_dim)
    shown = ((sc.imgs + 1.0) / 2.0 if binary else sc.imgs).reshape(-1, size, size)[:64]
    plot_files = [str(run.save_sample_grid(shown, "samples.png", vmin=0, vmax=1)), str(_loss_plot(run))] if plots else []
    metrics = _metrics(kind, ds.name, sc, ref, _model_info(kind, models, w, cfg.z_dim), int(reference.shape[0]),
                       dataset_info, cfg.iters)
    metrics |= {"train_wall_s": t_train, "eval_wall_s": time.perf_counter() - t1, "plots": plot_files}
    if kind == "vae":
        metrics["vae"] = _vae_metrics(cast(VAE, models["vae"]), x_train, x_test, seed)
    _save_model(run, kind, models, size, w, cfg.z_dim, ref.encoding, ds.name)
    metrics["wall_s"] = time.perf_counter() - t0
    run.write_final_metrics(metrics)
    return {"run_dir": str(run.path), "metrics": metrics}
