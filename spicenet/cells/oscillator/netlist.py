"""Netlist generators for ring oscillators, coupled pairs and switched coupled-oscillator networks.

The oscillator cell is a **pseudo-differential ring**: two rails of ``n_stages`` CMOS inverters (``p`` and ``n``)
with a weak cross-coupled inverter pair (width ratio ``latch``) between ``p_k`` and ``n_k`` at every stage, which
holds the rails in anti-phase. For odd ``n_stages`` each rail closes on itself; for even ``n_stages`` the loop is
closed with a twist (``p_{N-1} -> n_0``, ``n_{N-1} -> p_0``). Swapping the rails maps the circuit onto itself, so
``v(n_0)(t) = v(p_0)(t + T/2)``: the complementary output is *exactly* half a period (pi) away. That is how a
negative coupling is made: a resistor from ``p_0`` of ring i to ``n_0`` of ring j couples i to ``phi_j + pi``,
which is the phase model's rule ``H(phi_j + pi - phi_i)`` (``spicenet.cells.oscillator.phase``).
A single-ended ring (``differential=False``, odd ``n_stages``) is also available (it has no exact pi tap).

Naming (stable; used by ``measure`` and by anyone who ``alter``s a loaded deck), for oscillator ``i``:

* ring nodes ``o<i>p<k>`` / ``o<i>n<k>`` (k = 0..N-1); the phase of oscillator i is read at ``o<i>p0``;
* supply source ``vdd<i>`` (node ``vdd<i>``): DC, or a PWL (per-oscillator bias = supply offset);
* SHIL: behavioural current ``bshil<i>`` = ``v(shil<i>) * sin(2 pi (2 f_inj) t + psi)`` [A] into ``o<i>p0`` and
  ``o<i>n0`` (the second harmonic of both rails is in phase); envelope source ``vshil<i>`` (node ``shil<i>``, V
  read as amps), DC or PWL;
* noise: ``inoise<i>`` TRRANDOM Gaussian current into ``o<i>p0`` (std ``noise_a`` A every ``noise_dt`` s);
* detuning load ``cdet<i>`` on ``o<i>p0`` and ``o<i>n0`` (optional extra capacitance);
* coupling bank of pair (i, j), i < j: resistors ``rb<i>_<j>_<b>`` (R_lsb / 2^b, b = 0..n_bits-1) from ``o<i>p0`` to
  ``m<i>_<j>_<b>``, switches ``sb<i>_<j>_<b>`` from there to ``k<i>_<j>`` (control ``vcb<i>_<j>_<b>``), polarity
  switches ``spos<i>_<j>`` (``k<i>_<j>`` -> ``o<j>p0``, control ``vcp<i>_<j>``) and ``sneg<i>_<j>``
  (-> ``o<j>n0``, control ``vcn<i>_<j>``). Switches are ngspice ``S`` elements with ``.model swbank sw``
  (``vt = 0.5 V``, control 0 / 1 V).
* a plain pair (``pair_netlist``): one resistor ``rc`` from ``o0p0`` to ``o1p0`` (positive) or ``o1n0`` (negative).
* load calibration (``ring_netlist`` / ``pair_netlist`` with ``load=True``): a mid-supply source ``vmid`` (node
  ``vmid``, ``vdd / 2``) and resistors ``rlp<i>`` (``o<i>p0`` -> ``vmid``) and ``rln<i>`` (``o<i>n0`` -> ``vmid``),
  1 TOhm until ``alter``ed. This is the mean-field picture of a ring in a network: a bank resistor G from ``p0`` of
  ring i to a node of ring j carries ``G (v_j - v_i) = G (vdd/2 - v_i) + G (v_j - vdd/2)``; the first term is a
  resistive load to mid-supply (it pulls the frequency and shrinks the swing, and it does not average out over
  the phases of the neighbours), the second the zero-mean coupling that the pair calibration's H describes.

Mapping from the phase model (``phase.py``; calibrated numbers from ``spicenet calibrate oscillator``): a code
``c`` switches conductance ``|c| / r_lsb`` [S] (``g_unit_s = 1 / r_lsb``), ``K = k_per_siemens * G``; a SHIL strength
``L`` [rad/s] is a current amplitude ``L / shil_strength`` [A]; ``shil_psi = -2 * shil_phase_rad`` puts the two SHIL
states at phases 0 and pi of the reference ``2 pi f_inj t`` (a source ``sin(2 w (t + tau))`` shifts the locked
phase by ``w tau = psi / 2``); a bias ``b`` [rad/s] is a supply offset ``b / (2 pi df_dvdd_hz_per_v)`` [V].

The SPICE text of a ring stage is the shipped template ``netlists/oscillator/dring3.cir`` (a 3-stage ring, the
one source): :func:`ring_lines` renders it with the ring's values and composes a ring of any length from its stage-0
elements, the inverter ``xn0p0`` / ``xp0p0`` (``o0p2`` -> ``o0p0``), the cross-coupling inverter ``xn0lp0`` /
``xp0lp0`` (``o0n0`` -> ``o0p0``) and the load ``c0p0``, renamed (``spicenet.spice.fragments``); the tests check
that the rings of ``dring3.cir`` and ``pair3.cir`` are the generator's.
Everything is flat (no subcircuits), so Pelgrom mismatch (``spicenet.spice.mismatch``) finds every transistor.
Initial phases are set by ``.ic`` on every ring node (``initial_voltages``) and the deck is run with ``uic``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from spicenet.config import setting
from spicenet.spice.engine import Deck
from spicenet.spice.fragments import element_lines, rename
from spicenet.spice.process import check_geometry, get_process
from spicenet.spice.templates import Template, load_template

__all__ = [
    "RingSpec",
    "NetworkSpec",
    "ring_lines",
    "initial_voltages",
    "ring_node_names",
    "limit_cycle_table",
    "ring_netlist",
    "pair_netlist",
    "network_netlist",
    "code_bits",
    "load_lines",
    "pwl",
    "deck",
]


def _num(x: float) -> str:
    return f"{float(x):.12g}"


RING_VDD_RANGE_V = (0.1, 3.0)
"""Ring supply [V] that the generator and the ring templates (``netlists/oscillator/*.cir``) accept."""


@dataclass(frozen=True)
class RingSpec:
    """One ring oscillator. Widths/lengths in um, ``cload`` [F] per ring node, ``vdd`` [V].

    ``latch``: width of the cross-coupling inverters relative to the main inverters (differential only).
    """

    n_stages: int = setting(5, "inverter stages per rail (odd for a single-ended ring)")
    wn: float = setting(1.0, "nFET width of the main inverters", unit="um")
    wp: float = setting(2.0, "pFET width of the main inverters", unit="um")
    l: float = setting(0.15, "channel length", unit="um")
    cload: float = setting(5e-15, "load capacitance per ring node", unit="F")
    vdd: float = setting(1.2, "supply", unit="V")
    latch: float = setting(0.5, "width of the cross-coupling inverters relative to the main ones (differential)")
    differential: bool = setting(True, "pseudo-differential ring (two rails, cross-coupled) or a single-ended one")

    def __post_init__(self) -> None:
        if not isinstance(self.n_stages, int) or not 2 <= self.n_stages <= 101:
            raise ValueError(f"n_stages must be an int in [2, 101], got {self.n_stages!r}")
        if not self.differential and self.n_stages % 2 == 0:
            raise ValueError(f"n_stages must be odd for a single-ended ring, got {self.n_stages}")
        if not self.differential and self.n_stages < 3:
            raise ValueError(f"n_stages must be >= 3 for a single-ended ring, got {self.n_stages}")
        for name in ("wn", "wp", "l"):
            check_geometry(name, getattr(self, name), name[0])
        if not (math.isfinite(self.cload) and 0 <= self.cload <= 1e-9):
            raise ValueError(f"cload must be in [0, 1e-9] F, got {self.cload!r}")
        lo, hi = RING_VDD_RANGE_V
        if not (math.isfinite(self.vdd) and lo <= self.vdd <= hi):
            raise ValueError(f"vdd must be in [{lo:g}, {hi:g}] V, got {self.vdd!r}")
        if self.differential:
            if not (math.isfinite(self.latch) and 0.05 <= self.latch <= 2):
                raise ValueError(f"latch must be in [0.05, 2], got {self.latch!r}")
            check_geometry("latch * wn (the cross-coupling nFET width)", self.latch * self.wn, "w")
            check_geometry("latch * wp (the cross-coupling pFET width)", self.latch * self.wp, "w")

    @property
    def stage_phase(self) -> float:
        """Phase lag [rad] of ``p_{k+1}`` behind ``p_k`` in the ideal ring (each node: an inversion + one stage
        delay T / (2N) for odd N; for the twisted even ring the rail itself advances by pi/N per stage)."""
        n = self.n_stages
        return math.pi + math.pi / n if n % 2 == 1 else math.pi / n


RING_TEMPLATE = "oscillator/dring3"
"""The template whose stage-0 elements every ring is composed of (:func:`ring_lines`)."""
_STAGE = {"inverter": ("0p0", "o0p0", "o0p2"), "latch": ("0lp0", "o0p0", "o0n0")}
"""Stage-0 inverters of :data:`RING_TEMPLATE`: kind -> (name tag of ``xn<tag>`` / ``xp<tag>``, output, input)."""
_STAGE_CAP = ("c0p0", "o0p0")
_STAGE_SUPPLY = "vdd0"


@lru_cache(maxsize=1)
def ring_template() -> Template:
    """The parsed template :data:`RING_TEMPLATE`: the source of the ring stage's SPICE text."""
    return load_template(RING_TEMPLATE)


def template_values(spec: RingSpec) -> dict[str, float]:
    """Parameters of :data:`RING_TEMPLATE` for ``spec`` (``wnl`` / ``wpl`` = ``latch`` x ``wn`` / ``wp``; a
    single-ended ring has no cross-coupling inverters and gives the main widths), each rounded to the 12
    significant digits the generators write (the template writes the float's shortest text)."""
    wl = spec.latch if spec.differential else 1.0
    values = {"vdd": spec.vdd, "wn": spec.wn, "wp": spec.wp, "wnl": wl * spec.wn, "wpl": wl * spec.wp,
              "l": spec.l, "cload": spec.cload}
    return {k: float(_num(v)) for k, v in values.items()}


class _Stage:
    """The stage-0 elements of :data:`RING_TEMPLATE` rendered for one ``RingSpec``, to be copied under new names."""

    def __init__(self, spec: RingSpec) -> None:
        by_name = {line.split()[0]: line for line in element_lines(ring_template(), template_values(spec))}
        self.lines = {kind: (by_name[f"xn{tag}"], by_name[f"xp{tag}"]) for kind, (tag, _, _) in _STAGE.items()}
        self.cap = by_name[_STAGE_CAP[0]]

    def inverter(self, kind: str, name: str, out: str, inp: str, vdd: str) -> list[str]:
        """Inverter ``xn<name>`` / ``xp<name>`` (``kind`` "inverter" or "latch"): ``inp`` -> ``out``, supply ``vdd``."""
        tag, proto_out, proto_in = _STAGE[kind]
        names = {f"xn{tag}": f"xn{name}", f"xp{tag}": f"xp{name}", proto_out: out, proto_in: inp,
                 _STAGE_SUPPLY: vdd}
        return [rename(line, names) for line in self.lines[kind]]

    def load(self, name: str, node: str) -> str:
        """Load capacitor ``c<name>`` on ``node``."""
        return rename(self.cap, {_STAGE_CAP[0]: f"c{name}", _STAGE_CAP[1]: node})


def ring_lines(i: int, spec: RingSpec, supply: str | None = None) -> list[str]:
    """Deck lines of ring ``i`` (transistors and load capacitors) powered from node ``supply`` (default ``vdd<i>``),
    composed of the stage of :data:`RING_TEMPLATE`."""
    vdd = supply or f"vdd{i}"
    n = spec.n_stages
    stage = _Stage(spec)
    lines: list[str] = []
    rails = ("p", "n") if spec.differential else ("p",)
    for r in rails:
        for k in range(n):
            if k > 0:
                src = f"o{i}{r}{k - 1}"
            elif n % 2 == 1 or not spec.differential:
                src = f"o{i}{r}{n - 1}"
            else:  # even differential ring: twisted closure
                src = f"o{i}{'n' if r == 'p' else 'p'}{n - 1}"
            lines += stage.inverter("inverter", f"{i}{r}{k}", f"o{i}{r}{k}", src, vdd)
    if spec.differential:
        for k in range(n):
            lines += stage.inverter("latch", f"{i}lp{k}", f"o{i}p{k}", f"o{i}n{k}", vdd)
            lines += stage.inverter("latch", f"{i}ln{k}", f"o{i}n{k}", f"o{i}p{k}", vdd)
    if spec.cload > 0:
        for r in rails:
            for k in range(n):
                lines.append(stage.load(f"{i}{r}{k}", f"o{i}{r}{k}"))
    return lines


def ring_node_names(i: int, spec: RingSpec) -> list[str]:
    """Ring i's node names in table order: ``o<i>p0 .. o<i>p<N-1>`` then (differential) ``o<i>n0 .. o<i>n<N-1>``."""
    rails = ("p", "n") if spec.differential else ("p",)
    return [f"o{i}{r}{k}" for r in rails for k in range(spec.n_stages)]


def limit_cycle_table(t: np.ndarray, nodes: Sequence[np.ndarray], readout: np.ndarray, n_phase: int = 64,
                      t_start: float = 0.0) -> np.ndarray:
    """Node voltages on the limit cycle at phases ``2 pi m / n_phase`` -> array [n_phase, n_nodes] [V].

    ``nodes``: waveforms of the ring nodes in ``ring_node_names`` order; ``readout``: the waveform whose rising
    mid-level crossing defines phase 0 (``measure.osc_signal``). One period after ``t_start`` is sampled.
    """
    t = np.asarray(t, float)
    sel = t >= t_start
    r = np.asarray(readout, float)[sel]
    tt = t[sel]
    lvl = 0.5 * (r.min() + r.max())
    d = r - lvl
    idx = np.nonzero((d[:-1] < 0) & (d[1:] >= 0))[0]
    if idx.size < 2:
        raise ValueError("readout has fewer than 2 rising crossings after t_start: no oscillation")
    tc = tt[idx] + d[idx] / (d[idx] - d[idx + 1]) * (tt[idx + 1] - tt[idx])
    tm = tc[0] + (tc[1] - tc[0]) * np.arange(n_phase) / n_phase
    return np.stack([np.interp(tm, t, np.asarray(v, float)) for v in nodes], 1)


def initial_voltages(i: int, spec: RingSpec, phase: float, sharpness: float = 2.0,
                     table: np.ndarray | None = None) -> dict[str, float]:
    """``.ic`` node voltages that start ring ``i`` at phase ``phase`` [rad] of its limit cycle.

    With ``table`` (``limit_cycle_table`` of a free-running run: [n_phase, n_nodes]) the voltages are the limit
    cycle itself, interpolated in phase (measured start-phase error <= 0.03 rad, 3-stage generic ring). Without it node ``p_k`` gets
    ``vdd/2 (1 + clip(sharpness sin(phase - k stage_phase)))`` and ``n_k`` the complement (an approximation of the
    CMOS ring's trapezoid; measured start-phase error up to ~0.1 rad). Phase 0 is the rising crossing of the
    readout (``measure.osc_signal``).
    """
    if not math.isfinite(phase):
        raise ValueError(f"phase must be finite, got {phase!r}")
    names = ring_node_names(i, spec)
    if table is not None:
        table = np.asarray(table, float)
        if table.ndim != 2 or table.shape[1] != len(names) or table.shape[0] < 4:
            raise ValueError(f"table must have shape [n_phase >= 4, {len(names)}], got {table.shape}")
        m = table.shape[0]
        pos = (phase % (2 * math.pi)) / (2 * math.pi) * m
        lo = int(math.floor(pos)) % m
        w = pos - math.floor(pos)
        v = (1 - w) * table[lo] + w * table[(lo + 1) % m]
        return {k: float(x) for k, x in zip(names, v)}
    out: dict[str, float] = {}
    for k in range(spec.n_stages):
        s = float(np.clip(sharpness * math.sin(phase - k * spec.stage_phase), -1.0, 1.0))
        out[f"o{i}p{k}"] = 0.5 * spec.vdd * (1.0 + s)
        if spec.differential:
            out[f"o{i}n{k}"] = 0.5 * spec.vdd * (1.0 - s)
    return out


def _ic_lines(volts: dict[str, float]) -> list[str]:
    items = [f"v({k})={_num(v)}" for k, v in volts.items()]
    return [".ic " + " ".join(items[j:j + 8]) for j in range(0, len(items), 8)]


def pwl(times: Sequence[float] | np.ndarray, values: Sequence[float] | np.ndarray, rise: float = 20e-12) -> str:
    """``PWL(...)`` text of a piecewise-constant signal: ``values[s]`` from ``times[s]`` (times[0] = 0) with
    transitions of ``rise`` seconds. Times are printed with 15 significant digits."""
    t = [float(x) for x in times]
    v = [float(x) for x in values]
    if len(t) != len(v) or not t or t[0] != 0.0 or any(b <= a for a, b in zip(t, t[1:])):
        raise ValueError(f"times must start at 0 and increase, with one value each, got {t!r}")
    if not rise > 0:
        raise ValueError(f"rise must be > 0 s, got {rise!r}")
    pts = [(0.0, v[0])]
    for s in range(1, len(t)):
        pts.append((t[s], v[s - 1]))
        pts.append((t[s] + rise, v[s]))
    return "PWL(" + " ".join(f"{a:.15g} {b:.12g}" for a, b in pts) + ")"


def code_bits(code: int, n_bits: int = 4) -> tuple[int, list[int]]:
    """Signed code -> (sign in {-1, 0, +1}, magnitude bits LSB first). ``|code| <= 2^n_bits - 1``."""
    code = int(code)
    if abs(code) > 2**n_bits - 1:
        raise ValueError(f"code must satisfy |code| <= {2**n_bits - 1}, got {code}")
    mag = abs(code)
    return (0 if code == 0 else (1 if code > 0 else -1)), [(mag >> b) & 1 for b in range(n_bits)]


def load_lines(i: int, spec: RingSpec, g_p: float = 0.0, g_n: float = 0.0, with_source: bool = True) -> list[str]:
    """Mid-supply load of ring ``i``: ``rlp<i>`` = 1/g_p from ``o<i>p0`` and ``rln<i>`` = 1/g_n from ``o<i>n0`` to
    node ``vmid`` (a ``vdd / 2`` source ``vmid`` when ``with_source``); a zero conductance is written as 1 TOhm (so
    that ``alter rlp<i> = R`` can set it on a loaded deck). Conductances in S, in [0, 1] S."""
    for name, g in (("g_p", g_p), ("g_n", g_n)):
        if not (math.isfinite(g) and 0.0 <= g <= 1.0):
            raise ValueError(f"{name} must be a conductance in [0, 1] S, got {g!r}")
    if not spec.differential and g_n != 0.0:
        raise ValueError(f"g_n must be 0 for a single-ended ring, got {g_n!r}")
    lines = [f"vmid vmid 0 {_num(0.5 * spec.vdd)}"] if with_source else []
    lines.append(f"rlp{i} o{i}p0 vmid {_num(1.0 / g_p if g_p > 0 else 1e12)}")
    if spec.differential:
        lines.append(f"rln{i} o{i}n0 vmid {_num(1.0 / g_n if g_n > 0 else 1e12)}")
    return lines


def _header(title: str, process: str) -> list[str]:
    proc = get_process(process)
    return [f"* {title}", proc.header().rstrip("\n")]


def _supply(i: int, vdd: float | str) -> str:
    return f"vdd{i} vdd{i} 0 {vdd if isinstance(vdd, str) else _num(vdd)}"


def _shil_lines(i: int, f_inj: float, psi: float, amp: float | str) -> list[str]:
    w2 = 2.0 * math.pi * 2.0 * f_inj
    src = amp if isinstance(amp, str) else f"dc {_num(amp)}"
    return [f"vshil{i} shil{i} 0 {src}",
            f"bshilp{i} 0 o{i}p0 i = v(shil{i}) * sin({_num(w2)} * time + {_num(psi)})",
            f"bshiln{i} 0 o{i}n0 i = v(shil{i}) * sin({_num(w2)} * time + {_num(psi)})"]


def ring_netlist(spec: RingSpec = RingSpec(), *, process: str = "generic", phase: float = 0.0,
                 noise_a: float = 0.0, noise_dt: float = 10e-12, shil_a: float | None = None,
                 f_inj: float = 1e9, shil_psi: float = 0.0, cdet: float = 0.0, load: bool = False) -> str:
    """One ring (oscillator 0, supply ``vdd0``). ``noise_a`` > 0 adds a TRRANDOM current (std [A], step
    ``noise_dt`` [s]); ``shil_a`` (not None) adds SHIL at ``2 f_inj`` with envelope source ``vshil0`` = shil_a [A];
    ``load`` adds the (open, 1 TOhm) mid-supply load resistors ``rlp0`` / ``rln0`` (``load_lines``)."""
    lines = _header("spicenet ring oscillator", process)
    lines.append(_supply(0, spec.vdd))
    lines += ring_lines(0, spec)
    if cdet:
        lines.append(f"cdetp0 o0p0 0 {_num(cdet)}")
    if noise_a > 0:
        lines.append(f"inoise0 0 o0p0 dc 0 trrandom(2 {_num(noise_dt)} 0 {_num(noise_a)} 0)")
    if shil_a is not None:
        lines += _shil_lines(0, f_inj, shil_psi, shil_a)
    if load:
        lines += load_lines(0, spec)
    lines += _ic_lines(initial_voltages(0, spec, phase))
    lines.append(".end")
    return "\n".join(lines) + "\n"


def pair_netlist(spec: RingSpec = RingSpec(), r_ohm: float = 50e3, sign: int = 1, *, process: str = "generic",
                 dvdd: float = 0.0, phases: tuple[float, float] = (0.0, 1.0), noise_a: float = 0.0,
                 noise_dt: float = 10e-12, ic_table: np.ndarray | None = None, load: bool = False) -> str:
    """Two rings coupled by resistor ``rc`` (``r_ohm`` [Ohm]) from ``o0p0`` to ``o1p0`` (``sign=+1``) or to
    ``o1n0`` (``sign=-1``: the complementary phase, a negative coupling). Ring 1's supply is ``vdd + dvdd``
    (detuning; ``alter vdd1 dc = ...`` changes it on a loaded deck). Initial phases ``phases`` [rad]. ``load`` adds
    the open mid-supply load resistors of both rings (``load_lines``; set them with ``alter rlp0 = R``)."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    if not (math.isfinite(r_ohm) and r_ohm > 0):
        raise ValueError(f"r_ohm must be > 0 Ohm, got {r_ohm!r}")
    if sign == -1 and not spec.differential:
        raise ValueError("sign=-1 needs a differential ring (the complementary output)")
    lines = _header("spicenet coupled ring pair", process)
    lines += [_supply(0, spec.vdd), _supply(1, spec.vdd + dvdd)]
    for i in range(2):
        lines += ring_lines(i, spec)
        if noise_a > 0:
            lines.append(f"inoise{i} 0 o{i}p0 dc 0 trrandom(2 {_num(noise_dt)} 0 {_num(noise_a)} 0)")
    lines.append(f"rc o0p0 o1{'p' if sign == 1 else 'n'}0 {_num(r_ohm)}")
    if load:
        lines += load_lines(0, spec) + load_lines(1, spec, with_source=False)
    for i in range(2):
        lines += _ic_lines(initial_voltages(i, spec, phases[i], table=ic_table))
    lines.append(".end")
    return "\n".join(lines) + "\n"


@dataclass
class NetworkSpec:
    """An N-oscillator network with switched 4-bit coupling banks, SHIL, per-oscillator bias and initial phases.

    codes: [S, N, N] signed integer codes (segment s, pair (i, j); only i < j is read, the bank is symmetric);
    times: [S] segment start times [s] (times[0] = 0); shil_a: [S, N] SHIL current amplitudes [A];
    dvdd: [S, N] supply offsets [V] (the bias injection); phases: [N] initial phases [rad];
    r_lsb: resistance of the LSB resistor [Ohm] (bit b: r_lsb / 2^b, so G = |code| / r_lsb);
    f_inj: SHIL reference frequency [Hz] (injection at 2 f_inj); shil_psi: SHIL phase [rad];
    mask: [N, N] which banks exist (default: where any code is nonzero);
    ic_table: optional limit-cycle table (``limit_cycle_table``; calibration extra ``ic_table``) for exact ``.ic``
    phases; noise_a / noise_dt: TRRANDOM current noise per ring (std [A], step [s]).
    """

    codes: np.ndarray
    times: np.ndarray
    phases: np.ndarray
    shil_a: np.ndarray | None = None
    dvdd: np.ndarray | None = None
    ring: RingSpec = field(default_factory=RingSpec)
    r_lsb: float = 200e3
    n_bits: int = 4
    f_inj: float = 1e9
    shil_psi: float = 0.0
    r_on: float = 10.0
    mask: np.ndarray | None = None
    noise_a: float = 0.0
    noise_dt: float = 10e-12
    ic_table: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.codes = np.asarray(self.codes)
        if self.codes.ndim == 2:
            self.codes = self.codes[None]
        if self.codes.ndim != 3 or self.codes.shape[1] != self.codes.shape[2]:
            raise ValueError(f"codes must have shape [S, N, N], got {self.codes.shape}")
        s, n, _ = self.codes.shape
        if not np.all(self.codes == np.round(self.codes)) or np.abs(self.codes).max(initial=0) > 2**self.n_bits - 1:
            raise ValueError(f"codes must be integers with |code| <= {2**self.n_bits - 1}")
        self.codes = self.codes.astype(int)
        self.times = np.asarray(self.times, dtype=float).reshape(-1)
        if self.times.shape != (s,) or self.times[0] != 0 or np.any(np.diff(self.times) <= 0):
            raise ValueError(f"times must be [S]={s} increasing from 0, got {self.times}")
        self.phases = np.asarray(self.phases, dtype=float).reshape(-1)
        if self.phases.shape != (n,) or not np.all(np.isfinite(self.phases)):
            raise ValueError(f"phases must be [N]={n} finite, got shape {self.phases.shape}")
        for name in ("shil_a", "dvdd"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=float)
                if v.ndim == 1:
                    v = np.broadcast_to(v, (s, n)).copy()
                if v.shape != (s, n) or not np.all(np.isfinite(v)):
                    raise ValueError(f"{name} must have shape [S, N]=[{s}, {n}], got {v.shape}")
                setattr(self, name, v)
        if not (self.r_lsb > 0 and self.r_on >= 0 and self.f_inj > 0):
            raise ValueError(f"r_lsb, f_inj must be > 0 and r_on >= 0, got {self.r_lsb}, {self.f_inj}, {self.r_on}")
        if self.mask is None:
            self.mask = np.any(self.codes != 0, axis=0)
        self.mask = np.asarray(self.mask, dtype=bool)
        if self.mask.shape != (n, n):
            raise ValueError(f"mask must have shape [{n}, {n}], got {self.mask.shape}")

    @property
    def n(self) -> int:
        return int(self.codes.shape[1])


def network_netlist(net: NetworkSpec, *, process: str = "generic", title: str = "spicenet oscillator network") -> str:
    """Deck text of ``net``: rings, supplies (PWL bias), SHIL sources (PWL envelopes), switched resistor banks
    (PWL switch controls), optional TRRANDOM noise and ``.ic`` initial phases. Run with ``tran .. uic``."""
    n, times = net.n, net.times
    lines = _header(title, process)
    lines.append(f".model swbank sw vt=0.5 vh=0.1 ron={_num(max(net.r_on, 1e-3))} roff=1e12")

    def src(values: np.ndarray) -> str:
        if np.all(values == values[0]):
            return f"dc {_num(values[0])}"
        return pwl(times, values)

    for i in range(n):
        dv = net.dvdd[:, i] if net.dvdd is not None else np.zeros(len(times))
        lines.append(f"vdd{i} vdd{i} 0 {src(net.ring.vdd + dv)}")
        lines += ring_lines(i, net.ring)
        if net.shil_a is not None:
            lines += _shil_lines(i, net.f_inj, net.shil_psi, src(net.shil_a[:, i]))
        if net.noise_a > 0:
            lines.append(f"inoise{i} 0 o{i}p0 dc 0 trrandom(2 {_num(net.noise_dt)} 0 {_num(net.noise_a)} 0)")
    assert net.mask is not None  # filled in by NetworkSpec.__post_init__
    for i in range(n):
        for j in range(i + 1, n):
            if not (net.mask[i, j] or net.mask[j, i]):
                continue
            seg = [code_bits(c, net.n_bits) for c in net.codes[:, i, j]]
            for b in range(net.n_bits):
                lines.append(f"rb{i}_{j}_{b} o{i}p0 m{i}_{j}_{b} {_num(net.r_lsb / 2**b)}")
                lines.append(f"sb{i}_{j}_{b} m{i}_{j}_{b} k{i}_{j} cb{i}_{j}_{b} 0 swbank")
                lines.append(f"vcb{i}_{j}_{b} cb{i}_{j}_{b} 0 {src(np.array([float(s[1][b]) for s in seg]))}")
            lines.append(f"spos{i}_{j} k{i}_{j} o{j}p0 cp{i}_{j} 0 swbank")
            lines.append(f"vcp{i}_{j} cp{i}_{j} 0 {src(np.array([1.0 if s[0] > 0 else 0.0 for s in seg]))}")
            lines.append(f"sneg{i}_{j} k{i}_{j} o{j}n0 cn{i}_{j} 0 swbank")
            lines.append(f"vcn{i}_{j} cn{i}_{j} 0 {src(np.array([1.0 if s[0] < 0 else 0.0 for s in seg]))}")
    for i in range(n):
        lines += _ic_lines(initial_voltages(i, net.ring, float(net.phases[i]), table=net.ic_table))
    lines.append(".end")
    return "\n".join(lines) + "\n"


def deck(text: str, process: str = "generic", mismatch: str | None = None) -> Deck:
    """Wrap generated text as an engine ``Deck`` for ``process`` (``mismatch``: None or "pelgrom")."""
    return Deck(text, process=get_process(process), mismatch=mismatch)
