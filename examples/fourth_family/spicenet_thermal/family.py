"""The ``thermal`` family: a random-bit source made of a resistor's thermal noise sampled on a capacitor.

Physics. A resistor R at temperature T has the thermal noise voltage density S_v = 4 k T R (V^2/Hz); low-pass
filtered by the capacitor C to ground it integrates to the mean-square voltage

    <v_n^2> = int_0^inf 4kTR / (1 + (2 pi f R C)^2) df = k T / C          (V^2, independent of R),

so v_n ~ N(0, sigma^2) with sigma = sqrt(kT/C). A comparator with threshold v_th outputs 1 when v_n > v_th:

    P(1) = 1/2 erfc(v_th / (sigma sqrt 2)),      v_th = sigma sqrt 2 erfcinv(2 P(1)).

One bit resets the capacitor from ``vdd``: E_bit = C vdd^2 (J).

Verbs (protocol: :mod:`spicenet.families`):

* ``calibrate``: ngspice ``.noise`` of the template ``ktc.cir`` over a grid of capacitances x temperatures; the
  integrated output noise v(onoise_total)^2 is fitted to gamma k T / C by least squares through the origin
  (gamma = 1 is the analytic law); writes a surrogate with the per-point gamma and the fit numbers.
* ``train`` (trainer ``threshold``): Adam on v_th / sigma so that P(1) on chips drawn from the calibrated gamma
  spread is ``p_target``; writes a run directory (config.json, run.json, metrics.csv/json, model.pt).
* ``validate``: the trained threshold and capacitor exported to the template and simulated again in ngspice on
  Monte-Carlo chips (C with a 1 % seeded spread): P(1) from the SPICE sigma vs the surrogate's on the same chips.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spicenet.config import as_sections, load_config, setting
from spicenet.families import Family, Override, ReportLayout, Trainer, no_settings

K_B = 1.380649e-23          # J/K (SI, exact)
ZERO_CELSIUS = 273.15       # K
ROOT = Path(__file__).resolve().parent
TEMPLATE = ROOT / "ktc.cir"
ANALYSIS = "noise v(out) vin dec 20 1 1e16"  # integrates to ~16 decades above the RC corner of the widest point
CHIP_C_SPREAD = 0.01        # relative sigma of the sampling capacitor over Monte-Carlo chips (validate)


@dataclass(frozen=True)
class CalibrationConfig:
    """``calibration/thermal[_quick].toml`` (top-level keys)."""

    capacitances: list[float] = setting([1e-14, 1e-13, 1e-12], "sampling capacitors simulated", unit="F")
    temperatures: list[float] = setting([27.0], "temperatures simulated", unit="degC")
    resistance: float = setting(10e3, "switch resistance (sets the noise bandwidth, not the kT/C level)", unit="Ohm")
    vdd: float = setting(1.0, "reset voltage", unit="V")


@dataclass(frozen=True)
class ThresholdConfig:
    """``training/threshold[_quick].toml``: the comparator threshold trained to a target P(1) over chips."""

    p_target: float = setting(0.2, "target probability of a 1", section="design")
    capacitance: float = setting(1e-13, "sampling capacitor", unit="F", section="design")
    temperature: float = setting(27.0, "operating temperature", unit="degC", section="design")
    steps: int = setting(400, "Adam steps", section="train")
    lr: float = setting(0.05, "Adam learning rate of the threshold (in units of sigma)", section="train")
    batch_chips: int = setting(16, "Monte-Carlo chips per step", section="train")


TRAIN_DEFAULTS: dict[str, dict[str, Any]] = as_sections(ThresholdConfig())


def sigma_ktc(c_f: float, temp_c: float, gamma: float = 1.0) -> float:
    """RMS thermal noise of a capacitor c_f (F) at temp_c (degC): sqrt(gamma k T / C) in V."""
    return math.sqrt(gamma * K_B * (temp_c + ZERO_CELSIUS) / c_f)


def p_one(v_th: float, sigma: float) -> float:
    """P(v_n > v_th) for v_n ~ N(0, sigma^2): 1/2 erfc(v_th / (sigma sqrt 2))."""
    return 0.5 * math.erfc(v_th / (sigma * math.sqrt(2.0)))


def _spice_sigma(points: list[tuple[float, float]], resistance: float, process: str | None, workers: int
                 ) -> list[float]:
    """sqrt(v(onoise_total)^2) of the template at each (C in F, T in degC), from ngspice .noise."""
    import numpy as np

    from spicenet.spice.engine import Engine, render

    out = []
    with Engine(workers=max(1, min(workers, 2))) as engine:
        for c, t in points:
            deck = render(TEMPLATE, {"r": resistance, "c": c, "temp": t}, process=process)
            result = engine.simulate(deck, ANALYSIS)
            out.append(float(np.asarray(result.vectors["v(onoise_total)"]).ravel()[0]))
    return out


def calibrate(config: dict[str, Any], *, process: str, quick: bool, output: Path, workers: int,
              seed: int) -> dict[str, Any]:
    """ngspice .noise over the grid, the fit v_n^2 = gamma k T / C (gamma = sum x y / sum x^2 with x = kT/C,
    y = v_n^2), r2 of that fit and the largest relative deviation of v_n^2 from the analytic kT/C; writes the
    surrogate ``output`` and ``<stem>_ktc.png``. Returns {"output", "fit", "plots"}."""
    import numpy as np

    from spicenet.surrogate import SurrogateFile, SurrogateParam

    cfg = load_config(CalibrationConfig, config, "thermal calibration config")
    points = [(float(c), float(t)) for c in cfg.capacitances for t in cfg.temperatures]
    sigma = np.array(_spice_sigma(points, cfg.resistance, process, workers))
    x = np.array([K_B * (t + ZERO_CELSIUS) / c for c, t in points])  # kT/C, V^2
    y = sigma ** 2
    gamma = float(np.sum(x * y) / np.sum(x * x))
    r2 = float(1.0 - np.sum((y - gamma * x) ** 2) / np.sum((y - y.mean()) ** 2)) if len(y) > 1 else 1.0
    max_rel_err = float(np.max(np.abs(y / x - 1.0)))
    fit = {"gamma": gamma, "r2": r2, "max_rel_err": max_rel_err, "points": len(points)}
    output = Path(output)
    SurrogateFile(
        family="thermal", process=str(process),
        params={"gamma": SurrogateParam(values=y / x, unit="", positive=True,
                                        description="v_n^2 / (kT/C) per (C, T) grid point (1 = analytic law)")},
        energy={"energy_per_bit_at_1pf_j": 1e-12 * cfg.vdd ** 2},
        attrs={**fit, "resistance_ohm": cfg.resistance, "vdd_v": cfg.vdd, "law": "v_n^2 = gamma k T / C"},
        provenance={"config": {k: v for k, v in vars(cfg).items()}, "seed": seed, "analysis": ANALYSIS},
    ).save(output)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.loglog(x, y, "o", label="ngspice .noise")
    ax.loglog(x, gamma * x, "-", label=f"fit gamma = {gamma:.4f}")
    ax.set_xlabel("k T / C (V$^2$)")
    ax.set_ylabel("v(onoise_total)$^2$ (V$^2$)")
    ax.legend()
    fig.tight_layout()
    png = output.with_name(f"{output.stem}_ktc.png")
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return {"output": str(output), "fit": fit, "plots": [str(png)]}


def train(config: dict[str, Any], *, surrogate: Path, quick: bool, run_dir: Path, device: str,
          seed: int) -> dict[str, Any]:
    """Adam on u = v_th / sigma_nominal minimising mean_chips (P_chip(1) - p_target)^2, chips drawn from the
    calibrated gamma distribution (normal, mean/std of the surrogate). Returns {"run_dir", "metrics"}."""
    import torch

    from spicenet.surrogate import SurrogateFile
    from spicenet.train.run import RunDir

    cfg = as_sections(load_config(ThresholdConfig, config, "threshold config"))
    design, tcfg = cfg["design"], cfg["train"]
    sf = SurrogateFile.load(surrogate)
    g = sf.params["gamma"]
    sigma_nom = sigma_ktc(design["capacitance"], design["temperature"], float(g.mean))
    run = RunDir.create(run_dir, cfg, surrogate=surrogate, seed=seed, device=device, resume=False,
                        length_key="train.steps")
    meta = json.loads((run.path / "run.json").read_text())
    meta.update({"family": "thermal", "trainer": "threshold", "quick": bool(quick)})
    (run.path / "run.json").write_text(json.dumps(meta, indent=2))
    gen = torch.Generator().manual_seed(int(seed))
    u = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # v_th = u * sigma_nom; u = 0 gives P = 1/2
    opt = torch.optim.Adam([u], lr=float(tcfg["lr"]))
    p = float(design["p_target"])
    for step in range(1, int(tcfg["steps"]) + 1):
        gamma = (g.mean + g.std * torch.randn(int(tcfg["batch_chips"]), generator=gen, dtype=torch.float64)
                 ).clamp_min(1e-6)
        ratio = torch.sqrt(gamma / g.mean)  # sigma_chip / sigma_nom
        prob = 0.5 * torch.special.erfc(u / (ratio * math.sqrt(2.0)))
        loss = ((prob - p) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0 or step == int(tcfg["steps"]):
            run.log_metrics(step, loss=float(loss.detach()), p_one=float(prob.detach().mean()))
    v_th = float(u.detach()) * sigma_nom
    analytic = sigma_nom * math.sqrt(2.0) * float(torch.special.erfinv(torch.tensor(1.0 - 2.0 * p)))
    e_bit = design["capacitance"] / 1e-12 * sf.energy["energy_per_bit_at_1pf_j"]
    energy = energy_from_surrogate(sf.energy, capacitance_f=design["capacitance"], n_bits=1)
    torch.save({"v_th_v": v_th, "capacitance_f": design["capacitance"], "temperature_c": design["temperature"],
                "resistance_ohm": float(sf.attrs["resistance_ohm"])}, run.path / "model.pt")
    metrics = {"p_one": p_one(v_th, sigma_nom), "p_target": p, "v_th_v": v_th, "v_th_analytic_v": analytic,
               "sigma_v": sigma_nom, "energy_per_bit_j": e_bit, "energy": energy}
    run.write_final_metrics(metrics)
    return {"run_dir": str(run.path), "metrics": metrics}


def validate(run_dir: Path, *, chips: int | None, quick: bool, workers: int, seed: int,
             settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Chip 0 nominal, chips 1.. with C * (1 + 0.01 z), z ~ N(0, 1) from ``seed``; sigma from ngspice .noise of
    the exported template vs sqrt(gamma k T / C) of the surrogate; P(1) of the trained threshold on both. Writes
    ``<run>/validation/validation.json``."""
    import numpy as np
    import torch

    from spicenet.surrogate import SurrogateFile

    no_settings("thermal", settings)
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    model = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)
    sf = SurrogateFile.load(meta["surrogate"])
    n = int(chips) if chips is not None else (2 if quick else 4)
    z = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E4])).standard_normal(max(n - 1, 0))
    caps = [model["capacitance_f"]] + [model["capacitance_f"] * (1.0 + CHIP_C_SPREAD * float(v)) for v in z]
    temp, v_th, gamma = model["temperature_c"], model["v_th_v"], float(sf.params["gamma"].mean)
    sig_spice = _spice_sigma([(c, temp) for c in caps], model["resistance_ohm"], sf.process, workers)
    e_per_f = sf.energy["energy_per_bit_at_1pf_j"] / 1e-12
    per_chip = [{"chip": k, "capacitance_f": c, "sigma_v": s, "p_one": p_one(v_th, s), "energy_per_bit_j": c * e_per_f,
                 "p_one_surrogate": p_one(v_th, sigma_ktc(c, temp, gamma))}
                for k, (c, s) in enumerate(zip(caps, sig_spice))]
    spice = {"p_one": float(np.mean([r["p_one"] for r in per_chip])), "chips": per_chip,
             "energy_per_bit_j": float(np.mean([r["energy_per_bit_j"] for r in per_chip])), "analysis": ANALYSIS}
    surrogate = {"p_one": float(np.mean([r["p_one_surrogate"] for r in per_chip])),
                 "energy_per_bit_j": model["capacitance_f"] * e_per_f}
    gap = {"p_one_abs": float(np.mean([abs(r["p_one"] - r["p_one_surrogate"]) for r in per_chip])),
           "sigma_rel": float(np.mean([abs(s / sigma_ktc(c, temp, gamma) - 1.0) for c, s in zip(caps, sig_spice)]))}
    result = {"surrogate": surrogate, "spice": spice, "gap": gap, "chips": len(per_chip)}
    (run_dir / "validation").mkdir(exist_ok=True)
    (run_dir / "validation" / "validation.json").write_text(json.dumps(result, indent=2))
    return result


def energy_from_surrogate(energy_attrs: dict[str, float], **structure: Any) -> dict[str, Any]:
    """E = n_bits * (C / 1 pF) * E_bit(1 pF), E_bit(1 pF) = 1 pF * vdd^2 (the capacitor reset per bit); structure:
    ``capacitance_f`` (F), ``n_bits``."""
    from spicenet.energy import breakdown, check_counts, check_nonneg, need

    e_1pf = need(energy_attrs, "energy_per_bit_at_1pf_j", "thermal")
    c, n = float(structure["capacitance_f"]), int(structure.get("n_bits", 1))
    check_nonneg(capacitance_f=c)
    check_counts(n_bits=n)
    return breakdown("thermal", "E = n_bits * C * vdd^2", {"capacitor_resets": n * c / 1e-12 * e_1pf},
                     {"capacitance_f": c, "n_bits": n, "energy_per_bit_at_1pf_j": e_1pf})


FAMILY = Family(
    name="thermal",
    trainers=(Trainer("threshold", length=("train", "steps"), length_unit="steps", can_resume=False),),
    calibrate=calibrate, train=train, validate=validate,
    schemas={"calibration": lambda: CalibrationConfig, "threshold": lambda: ThresholdConfig},
    row={
        "fit": [("r2 of v_n^2 = gamma kT/C", "calibrate", "fit.r2"),
                ("max rel. deviation from kT/C", "calibrate", "fit.max_rel_err")],
        "surrogate_metric": ("P(1) on the surrogate, nominal chip", "train", "metrics.p_one"),
        "spice_metric": ("P(1) in ngspice, mean over chips", "validate", "spice.p_one"),
        "gap": ("|P(1) SPICE - surrogate| same chips", "validate", "gap.p_one_abs"),
        "energy": ("J per bit (capacitor reset)", "validate", "surrogate.energy_per_bit_j",
                   "spice.energy_per_bit_j"),
        "extra": [("gamma", "calibrate", "fit.gamma"), ("v_th_v", "train", "metrics.v_th_v")],
    },
    report=ReportLayout(
        validation_files=("validation/validation.json",),
        chip_series=(("validation", "spice.chips.[].p_one", "SPICE chips: P(1)", False, "surrogate.p_one", None),),
        chip_energy=(("spice.chips.[].energy_per_bit_j", "J per bit"),),
    ),
    energy=energy_from_surrogate,
    quick_overrides=(Override("thermal", "training", "train.steps", 100,
                              "100 Adam steps instead of 200: P(1) within ~2e-3 of the target instead of ~1e-5 "
                              "(metrics.csv of each)"),),
    config_root=ROOT,
)
