"""ngspice netlists equivalent to a :class:`ResistiveNetwork` (what :mod:`.solver` computes, element for element).

Naming (stable, so an engine can ``alter`` sources and read node voltages):

* input sources ``vinp<k>`` (node ``inp<k>``, ``+g x_k``) and ``vinn<k>`` (node ``inn<k>``, ``-g x_k``);
* bias sources ``vbiasp``/``vbiasn`` (nodes ``biasp``/``biasn``); diode rails ``vdp`` (node ``rail_p``, ``+vb``) and
  ``vdn`` (node ``rail_n``, ``-vb``);
* free nodes ``h<l>_<j>`` (layer l = 1..L, the last layer holds the outputs);
* resistors ``r<l>_<i>_<j>`` (weight matrix l, row i, column j; omitted when G <= 0, i.e. an open circuit) and
  ``rb<l>_<i>_<j>`` (bias conductances);
* diodes ``du_<node>`` (anode node, cathode ``rail_p``) and ``dl_<node>`` (anode ``rail_n``, cathode node);
  one ``.model`` card when the chip has no diode mismatch, one per diode otherwise. Rectifier units
  (``units="rectifier"``): an excitatory hidden node has only ``dl_<node>`` (anode ground ``0``), an inhibitory one
  only ``du_<node>`` (cathode ``0``);
* bidirectional amplifiers (networks with ``amp_gain``), for node ``h<l>_<i>`` of a layer l < L and copy
  ``c`` in {p, n} (sign sigma = +1, -1): ``ea<c><l>_<i>`` VCVS (output ``a<c><l>_<i>`` = sigma A V(h<l>_<i>)),
  ``va<c><l>_<i>`` a 0 V sense source from the VCVS output to ``a<c><l>_<i>s`` where the resistors to layer l+1
  hang, and ``fa<c><l>_<i>`` CCCS drawing ``sigma b I(va<c><l>_<i>)`` out of ``h<l>_<i>`` (the backward current);
* nudging (optional): ``gnud<j>`` VCCS drawing ``beta (V_out - y)`` out of output j, ``vtgt<j>`` the target.
"""

from __future__ import annotations

from typing import cast

import numpy as np
import torch
from torch import Tensor

from spicenet.cells.resistive.network import Chip, ResistiveNetwork

__all__ = ["free_node_names", "input_source_names", "network_netlist", "network_deck", "alter_commands",
           "SWEEP_SOURCE", "sweep_deck", "sweep_from_deck", "sweep_analysis"]

#: the voltage source whose DC sweep steps a :func:`sweep_deck` through its inputs (its node drives nothing but the
#: input drivers' control, so it carries no current)
SWEEP_SOURCE = "vspicenet_idx"
_SWEEP_NODE = "spicenet_idx"
_KNOTS_PER_LINE = 8


def _num(x: float | Tensor) -> str:
    return f"{float(x):.17g}"


def free_node_names(net: ResistiveNetwork) -> list[str]:
    """Names of the free nodes in solver order (layer by layer)."""
    return [f"h{layer}_{j}" for layer in range(1, len(net.layer_sizes)) for j in range(net.layer_sizes[layer])]


def input_source_names(net: ResistiveNetwork) -> list[tuple[str, str]]:
    """(positive, negative) voltage-source names for every input."""
    return [(f"vinp{k}", f"vinn{k}") for k in range(net.n_in)]


def _check_x(net: ResistiveNetwork, x: Tensor | None) -> Tensor:
    if x is None:
        return torch.zeros(net.n_in, dtype=torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64).flatten()
    if x.numel() != net.n_in or not bool(torch.isfinite(x).all()):
        raise ValueError(f"x must be {net.n_in} finite numbers, got shape {tuple(x.shape)}")
    return x


def network_netlist(
    net: ResistiveNetwork,
    x: Tensor | None = None,
    *,
    chip: Chip | None = None,
    beta: float = 0.0,
    target: Tensor | None = None,
    options: dict[str, float] | None = None,
    analysis: bool = True,
    title: str = "spicenet resistive network",
) -> str:
    """Netlist text of ``net`` (on ``chip``) for one input vector ``x`` [n_in] with one ``.op``.

    ``beta``/``target`` add the MSE nudge (VCCS ``beta`` S towards ``target`` V at each output); ``options`` are
    extra ``.options`` (e.g. ``{"reltol": 1e-9}``); ``analysis=False`` leaves the ``.op`` line out.
    """
    xv = _check_x(net, x)
    gw, gb = net.conductances(chip)
    gw = [g.detach().cpu().double() for g in gw]
    gb = [g.detach().cpu().double() for g in gb]
    circ = net.circuit(chip)
    is_, nn_ = circ.is_.detach().cpu(), circ.n.detach().cpu()
    nodes = free_node_names(net)
    opts = {"gmin": net.gmin, "temp": net.temperature - 273.15, "tnom": net.temperature - 273.15}
    opts.update(options or {})
    lines = [f"* {title} {'-'.join(map(str, net.layer_sizes))}",
             ".options " + " ".join(f"{k}={_num(v)}" for k, v in opts.items())]
    gain = net.input_gain
    for k, (sp, sn) in enumerate(input_source_names(net)):
        lines.append(f"{sp} inp{k} 0 DC {_num(gain * xv[k])}")
        lines.append(f"{sn} inn{k} 0 DC {_num(-gain * xv[k])}")
    src_nodes = [f"inp{k}" for k in range(net.n_in)] + [f"inn{k}" for k in range(net.n_in)]
    if net.has_bias:
        lines.append(f"vbiasp biasp 0 DC {_num(net.v_bias)}")
        lines.append(f"vbiasn biasn 0 DC {_num(-net.v_bias)}")
    lines.append(f"vdp rail_p 0 DC {_num(net.vb)}")
    lines.append(f"vdn rail_n 0 DC {_num(-net.vb)}")
    amp_rows: dict[int, list[str]] = {}
    if net.amp_gain is not None:
        for layer in range(1, len(gw)):
            names = [nodes[i] for i in range(*_bounds(net, layer))]
            rows_l = []
            for c, sign in (("p", 1.0), ("n", -1.0)):
                for i, h in enumerate(names):
                    tag = f"{c}{layer}_{i}"
                    lines.append(f"ea{tag} a{tag} 0 {h} 0 {_num(sign * net.amp_gain)}")
                    lines.append(f"va{tag} a{tag} a{tag}s DC 0")
                    # amp_back is set whenever amp_gain is (ResistiveNetwork.__init__)
                    lines.append(f"fa{tag} {h} 0 va{tag} {_num(sign * cast(float, net.amp_back))}")
                    rows_l.append(f"a{tag}s")
            amp_rows[layer] = rows_l
    for layer, g in enumerate(gw):
        if layer == 0:
            rows = src_nodes
        elif net.amp_gain is not None:
            rows = amp_rows[layer]
        else:
            rows = [nodes[i] for i in range(*_bounds(net, layer))]
        cols = [nodes[i] for i in range(*_bounds(net, layer + 1))]
        for i, j in (g > 0).nonzero().tolist():
            lines.append(f"r{layer}_{i}_{j} {rows[i]} {cols[j]} {_num(1.0 / g[i, j])}")
    for layer, g in enumerate(gb, start=1):
        cols = [nodes[i] for i in range(*_bounds(net, layer))]
        for i, j in (g > 0).nonzero().tolist():
            lines.append(f"rb{layer}_{i}_{j} {('biasp', 'biasn')[i]} {cols[j]} {_num(1.0 / g[i, j])}")
    rails, present = _diode_rails(net)
    uniform = bool((is_ == is_[0, 0]).all() and (nn_ == nn_[0, 0]).all())
    rs = f" RS={_num(net.rs)}" if net.rs > 0 else ""
    for idx, name in enumerate(nodes if net.diodes else []):
        up, lo = rails[idx]
        mu = "dres" if uniform else f"dres_u_{name}"
        ml = "dres" if uniform else f"dres_l_{name}"
        if bool(present[idx, 0]):
            lines.append(f"du_{name} {name} {up} {mu}")
            if not uniform:
                lines.append(f".model {mu} D(IS={_num(is_[idx, 0])} N={_num(nn_[idx, 0])}{rs})")
        if bool(present[idx, 1]):
            lines.append(f"dl_{name} {lo} {name} {ml}")
            if not uniform:
                lines.append(f".model {ml} D(IS={_num(is_[idx, 1])} N={_num(nn_[idx, 1])}{rs})")
    if uniform and net.diodes:
        lines.append(f".model dres D(IS={_num(is_[0, 0])} N={_num(nn_[0, 0])}{rs})")
    if beta != 0.0:
        if target is None:
            raise ValueError("target must be given when beta != 0")
        tv = torch.as_tensor(target, dtype=torch.float64).flatten()
        if tv.numel() != net.n_out:
            raise ValueError(f"target must have {net.n_out} values, got {tv.numel()}")
        outs = nodes[net.out_slice]
        for j, name in enumerate(outs):
            lines.append(f"vtgt{j} tgt{j} 0 DC {_num(tv[j])}")
            lines.append(f"gnud{j} {name} 0 {name} tgt{j} {_num(beta)}")
    if analysis:
        lines.append(".op")
    lines.append(".end")
    return "\n".join(lines) + "\n"


def _diode_rails(net: ResistiveNetwork) -> tuple[list[tuple[str, str]], Tensor]:
    """Per free node the (upper cathode, lower anode) rail node names and the [N, 2] mask of existing diodes."""
    layout = net.diode_layout()
    if layout is None:
        return [("rail_p", "rail_n")] * net.n_free, torch.ones(net.n_free, 2, dtype=torch.bool)
    names = {(0, net.vb): "rail_p", (1, -net.vb): "rail_n", (0, 0.0): "0", (1, 0.0): "0"}
    volts = layout[0].detach().cpu().tolist()
    if any((col, v) not in names for row in volts for col, v in enumerate(row)):
        raise ValueError("network_netlist: a diode rail other than 0 V or +-vb cannot be exported")
    return [(names[(0, up)], names[(1, lo)]) for up, lo in volts], layout[1].detach().cpu()


def _bounds(net: ResistiveNetwork, layer: int) -> tuple[int, int]:
    sl = net.layer_slice(layer)
    return sl.start, sl.stop


def network_deck(net: ResistiveNetwork, *, chip: Chip | None = None, options: dict[str, float] | None = None) -> str:
    """Deck for an engine that loops over inputs: input sources at 0 V (named by :func:`input_source_names`),
    no analysis line; per input send :func:`alter_commands` then ``op``."""
    return network_netlist(net, None, chip=chip, options=options, analysis=False)


def sweep_deck(net: ResistiveNetwork, x: Tensor, *, chip: Chip | None = None,
               options: dict[str, float] | None = None) -> str:
    """Deck whose DC sweep (:func:`sweep_analysis`) solves the operating point of ``net`` for every row of ``x``
    [B, n_in], one sweep point per input.

    Each input driver is the same ideal voltage source as in :func:`network_deck`, but its value is a
    piecewise-linear function of a sweep index: ``binp{k} inp{k} 0 V=pwl(V(spicenet_idx), 0, g x_0k, 1, g x_1k,
    ...)`` (``binn{k}`` the negated copy; g the input gain in V per unit input). At index b, a knot, the source is
    exactly ``g x_bk``. ngspice's DC transfer curve (``dc vspicenet_idx 0 B-1 1``) solves each point by a full
    Newton iteration to the deck's tolerances, started from the previous point's solution, and orders the sparse
    matrix once for the whole sweep instead of once per ``.op`` (ngspice 39's Sparse 1.3 re-orders at every
    ``.op``, which dominates large networks: measured on 784-100-100-10 with amplifiers, 25 s per ``.op`` through
    ``alter`` against 0.7 s per sweep point, the same node voltages to 1e-10 V). The sources' branch currents are
    ``i(binp{k})`` / ``i(binn{k})``; the sweep source carries no current."""
    return sweep_from_deck(network_deck(net, chip=chip, options=options), net, x)


def sweep_from_deck(deck: str, net: ResistiveNetwork, x: Tensor) -> str:
    """:func:`sweep_deck` made from ``deck``, a deck of :func:`network_deck` as the caller has it (e.g. with the
    process diodes swapped in): its input sources replaced by the pwl drivers of ``x`` [B, n_in], the sweep source
    added. Rendering a large network is the costly part (784-100-100-10: ~1.4 s), so a caller solving many chunks of
    inputs renders the deck once and calls this per chunk."""
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] != net.n_in or not bool(torch.isfinite(x).all()):
        raise ValueError(f"x must be [B >= 1, {net.n_in}] finite numbers, got shape {tuple(x.shape)}")
    values = (net.input_gain * x).numpy()
    if values.shape[0] == 1:  # pwl needs two knots: a flat segment
        values = np.concatenate([values, values])
    drivers: dict[str, str] = {}
    for k, (sp, sn) in enumerate(input_source_names(net)):
        for name, node, sign in ((sp, f"inp{k}", 1.0), (sn, f"inn{k}", -1.0)):
            knots = [f"{b}, {_num(sign * v)}" for b, v in enumerate(values[:, k])]
            rows = [", ".join(knots[i:i + _KNOTS_PER_LINE]) for i in range(0, len(knots), _KNOTS_PER_LINE)]
            body = "\n+ , ".join(rows)
            drivers[name] = f"b{name[1:]} {node} 0 V=pwl(V({_SWEEP_NODE}), {body})"
    lines = []
    for line in deck.splitlines():
        name = line.split(" ", 1)[0]
        if name in drivers:
            line = drivers.pop(name)
        elif line.lower() == ".end":
            lines.append(f"{SWEEP_SOURCE} {_SWEEP_NODE} 0 DC 0")
        lines.append(line)
    if drivers:
        raise ValueError(f"sweep_from_deck: the deck lacks the input sources {', '.join(sorted(drivers)[:3])}... "
                         f"(not a network_deck of this {'-'.join(map(str, net.layer_sizes))} network?)")
    return "\n".join(lines) + "\n"


def sweep_analysis(n_inputs: int) -> str:
    """The ngspice analysis that steps a :func:`sweep_deck` of ``n_inputs`` inputs through all of them."""
    if n_inputs < 1:
        raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
    return f"dc {SWEEP_SOURCE} 0 {n_inputs - 1} 1"


def alter_commands(net: ResistiveNetwork, x: Tensor) -> list[str]:
    """ngspice ``alter`` commands setting the input sources to input vector ``x`` [n_in]."""
    xv = _check_x(net, x)
    cmds = []
    for k, (sp, sn) in enumerate(input_source_names(net)):
        cmds.append(f"alter {sp} = {_num(net.input_gain * xv[k])}")
        cmds.append(f"alter {sn} = {_num(-net.input_gain * xv[k])}")
    return cmds
