"""Every random stream of the package, derived from the user's seed in one way.

A stream is a registered :class:`Stream` (:func:`register`; :func:`streams` lists them all). Its draws for
(seed, *index) come from the numpy ``SeedSequence`` whose entropy is ``[seed, stream.word, *index]``
(:func:`sequence`), consumed as

* :func:`numpy_generator` -- ``Generator(PCG64(sequence))``, what ``numpy.random.default_rng(sequence)`` builds;
* :func:`int_seed` -- a non-negative integer (63 bits by default) for integer-seeded generators, taken from the
  sequence's first words as the stream's :class:`Layout` says; :func:`torch_generator` seeds a ``torch.Generator``
  with it;
* :func:`ngspice_seed` -- a ``setseed`` value in [1, 2^31 - 2] (ngspice refuses 0), the engine's formula
  (:func:`spicenet.spice.engine.derived_seed`) applied to the stream's sequence.

``seed`` is whatever the stream's ``parent`` says: the user's seed for most streams, a chip seed or a sample seed
(itself an :func:`int_seed` of another stream) for the streams that draw one chip's or one sample set's numbers.

The core's streams are defined here; every family declares its own in ``spicenet/cells/<family>/streams.py`` (the
core names no family). The engine's Monte-Carlo contract (``spicenet.spice.mismatch.chip_seed``: chip ``c`` of a
run seeded ``s`` draws its Pelgrom mismatch from ``SeedSequence([s, c])``, its ngspice seed is
``derived_seed(s, c)``) is the stream :data:`MONTECARLO_CHIP`; it and the other Monte-Carlo *blocks* have no
word: their entropy is ``[seed, base + chip, *more]``. :class:`ChipBlock` places the Monte-Carlo chip numbers of
the cells of a validation's chips, :func:`block_seed` the few plain integer seeds ``seed * 1000 + k`` the package
hands to integer-seeded models.

Legacy values. Every word is the value its site used before this module existed, so that every published number
stays what it was (``tests/test_seeds.py`` checks each against the old expression). Two consequences to keep in
mind when adding a stream:

* a few words are shared by streams of different modules (registered with ``shared=True``;
  :func:`shared_words`); the streams of one word differ in what they are keyed by (a user seed against a chip
  seed) or in how the sequence is consumed (a numpy generator against an integer seed, or two different integer
  layouts), so no two of them produce the same numbers;
* numpy's ``SeedSequence`` pads the entropy with zeros to 4 words, so ``[s, w]``, ``[s, w, 0]`` and
  ``[s, w, 0, 0]`` are the same sequence -- and ``[s, w]`` is also Monte-Carlo chip ``w`` of seed ``s``. Streams
  used with and without an index, or whose words fall in a range of chip numbers, share sequences in this way;
  the draws they feed are unrelated quantities of different commands, never compared or combined.

A new stream takes a word no stream uses (:func:`register` refuses a shared word unless both streams are marked
``shared``), always the same number of indices, and the default :attr:`Layout.HIGH64`.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Layout", "Stream", "register", "streams", "shared_words", "sequence", "numpy_generator", "int_seed",
           "torch_generator", "ngspice_seed", "name_index", "block_seed", "ChipBlock", "MONTECARLO_CHIP", "SPLIT",
           "SUBSET", "BASELINE_BATCH", "MISMATCH_TRAIN_CHIP", "MISMATCH_EVAL_CHIP", "CHIP_CELL_Z", "CHIP_GLOBAL_Z"]


class Layout(enum.Enum):
    """How :func:`int_seed` turns a stream's sequence into an integer (``w0, w1``: its first two 32-bit words)."""

    HIGH64 = "high64"  #: the top ``bits`` of the first 64-bit word ``w0 | w1 << 32`` (the default)
    XOR31 = "xor31"    #: ``((w0 << 31) ^ w1) mod 2^63`` (the former ``spicenet.train.mismatch._seed_int``)
    LOW32 = "low32"    #: the first 32-bit word ``w0`` (32 bits at most)
    NUMPY = "numpy"    #: drawn only through numpy generators / ngspice seeds: :func:`int_seed` refuses it


@dataclass(frozen=True)
class Stream:
    """One named random stream (make it with :func:`register`)."""

    name: str            #: unique, upper case by convention (``"SPLIT"``)
    word: int | None     #: the entropy word after the parent seed; None: a block of Monte-Carlo chip numbers
    parent: str          #: what the first entropy word is ("seed": the user's seed, "chip seed", ...)
    index: str           #: what the indices are ("()" for none)
    draws: str           #: what the stream draws, where
    layout: Layout = Layout.HIGH64  #: how :func:`int_seed` reads it
    base: int = 0        #: word None: the Monte-Carlo chip number of index 0
    arity: int | None = None  #: the number of indices, when fixed (checked)
    shared: bool = False  #: a legacy word that other ``shared`` streams use too (module docstring)


_REGISTRY: dict[str, Stream] = {}


def register(name: str, word: int | None, *, draws: str, parent: str = "seed", index: str = "()",
             layout: Layout = Layout.HIGH64, base: int = 0, arity: int | None = None, shared: bool = False) -> Stream:
    """Register (or, identically again, look up) the stream ``name``. A worded stream takes a word no other
    stream uses, unless both are ``shared`` (legacy values); Monte-Carlo blocks (``word=None``) name their
    ``base`` chip number instead."""
    stream = Stream(name, None if word is None else int(word), parent, index, draws, layout, int(base), arity,
                    bool(shared))
    old = _REGISTRY.get(name)
    if old is not None:
        if old != stream:
            raise ValueError(f"stream {name!r} is already registered differently: {old}")
        return old
    if stream.word is not None:
        if stream.word < 0:
            raise ValueError(f"stream {name!r}: the word must be >= 0, got {word}")
        clash = [s.name for s in _REGISTRY.values() if s.word == stream.word and not (s.shared and stream.shared)]
        if clash:
            raise ValueError(f"stream {name!r}: word {stream.word} is used by {clash}")
    _REGISTRY[name] = stream
    return stream


def streams() -> dict[str, Stream]:
    """Every registered stream by name (the families' once their ``streams`` modules are imported)."""
    return dict(_REGISTRY)


def shared_words() -> dict[int, tuple[Stream, ...]]:
    """The words used by more than one registered stream, with their streams."""
    out: dict[int, list[Stream]] = {}
    for s in _REGISTRY.values():
        if s.word is not None:
            out.setdefault(s.word, []).append(s)
    return {w: tuple(v) for w, v in out.items() if len(v) > 1}


# ------------------------------------------------------------------------------------------- core streams
MONTECARLO_CHIP = register("MONTECARLO_CHIP", None, index="chip", arity=1, layout=Layout.NUMPY, draws=(
    "spicenet.spice (mismatch.chip_seed / engine.derived_seed): chip c's Pelgrom alter values and its ngspice "
    "setseed (PDK agauss mismatch, noise reseed)"))
SPLIT = register("SPLIT", 0x5B1D, layout=Layout.NUMPY, draws=(
    "data.dataset.stratified_split: the per-class and final permutations"))
SUBSET = register("SUBSET", 0xBA1, layout=Layout.NUMPY, draws=(
    "data.dataset.balanced_subset: which classes get one more item, which items"))
BASELINE_BATCH = register("BASELINE_BATCH", 0xBA5E, index="iteration", layout=Layout.LOW32, draws=(
    "baselines.train._batches: the minibatch indices (torch)"))
MISMATCH_TRAIN_CHIP = register("MISMATCH_TRAIN_CHIP", 0, index="step | step, batch | epoch | ()",
                               layout=Layout.XOR31, shared=True, draws=(
                                   "train.mismatch.ChipSampler.train_seed (and the trainers' per-step chips): the "
                                   "training chip's seed"))
MISMATCH_EVAL_CHIP = register("MISMATCH_EVAL_CHIP", 1, index="chip i", layout=Layout.XOR31, shared=True, draws=(
    "train.mismatch.ChipSampler (and the trainers' eval_seeds): the held-out evaluation chips' seeds"))
CHIP_CELL_Z = register("CHIP_CELL_Z", 0, parent="chip seed", index="name_index(parameter)", layout=Layout.XOR31,
                       shared=True, draws=(
                           "train.mismatch.MismatchModel.sample_chip: per-cell standard normals of one parameter"))
CHIP_GLOBAL_Z = register("CHIP_GLOBAL_Z", 1, parent="chip seed", index="name_index(parameter)",
                         layout=Layout.XOR31, shared=True, draws=(
                             "train.mismatch.MismatchModel.sample_chip: the chip-global (die-to-die) standard normal "
                             "of one parameter"))


# ------------------------------------------------------------------------------------------- derivations
def _nonneg(name: str, v: int) -> int:
    i = int(v)
    if i != v or i < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {v!r}")
    return i


def sequence(seed: int, stream: Stream, *index: int) -> np.random.SeedSequence:
    """The ``SeedSequence`` of ``stream`` for (seed, *index): entropy ``[seed, stream.word, *index]``; for a
    Monte-Carlo block (word None) ``[seed, base + index[0], *index[1:]]``, with one index the engine's own
    ``mismatch.chip_seed(seed, base + index)``."""
    if not isinstance(stream, Stream):
        raise TypeError(f"stream: expected a spicenet.seeds.Stream, got {stream!r}")
    s = _nonneg("seed", seed)
    idx = [_nonneg("index", i) for i in index]
    if stream.arity is not None and len(idx) != stream.arity:
        raise ValueError(f"{stream.name}: expected {stream.arity} indices ({stream.index}), got {len(idx)}")
    if stream.word is None:
        if not idx:
            raise ValueError(f"{stream.name}: a Monte-Carlo block needs the chip as its first index")
        if len(idx) == 1:
            from spicenet.spice.mismatch import chip_seed

            return chip_seed(s, stream.base + idx[0])
        return np.random.SeedSequence([s, stream.base + idx[0], *idx[1:]])
    return np.random.SeedSequence([s, stream.word, *idx])


def numpy_generator(seed: int, stream: Stream, *index: int) -> np.random.Generator:
    """``numpy.random.Generator(PCG64(sequence(...)))``: the generator ``default_rng(sequence(...))`` builds."""
    return np.random.Generator(np.random.PCG64(sequence(seed, stream, *index)))


def _native(stream: Stream, ss: np.random.SeedSequence) -> tuple[int, int]:
    """(value, width in bits) of the stream's integer layout."""
    if stream.layout is Layout.HIGH64:
        return int(ss.generate_state(1, np.uint64)[0]), 64
    if stream.layout is Layout.XOR31:
        a, b = ss.generate_state(2, np.uint32)
        return ((int(a) << 31) ^ int(b)) & ((1 << 63) - 1), 63
    if stream.layout is Layout.LOW32:
        return int(ss.generate_state(1, np.uint32)[0]), 32
    raise ValueError(f"{stream.name} is drawn through numpy generators only (Layout.NUMPY): no int_seed")


def int_seed(seed: int, stream: Stream, *index: int, bits: int | None = None) -> int:
    """A non-negative integer seed of ``stream`` for (seed, *index): the top ``bits`` bits of the stream's layout
    value (:class:`Layout`; ``bits`` defaults to 63, 32 for ``LOW32`` streams, and cannot exceed the layout's
    width). 63 bits fit ``torch.Generator.manual_seed`` and every signed 64-bit seed."""
    value, width = _native(stream, sequence(seed, stream, *index))
    b = min(63, width) if bits is None else int(bits)
    if not 1 <= b <= width:
        raise ValueError(f"bits: expected 1..{width} for {stream.name} ({stream.layout.name}), got {bits!r}")
    return value >> (width - b)


def torch_generator(seed: int, stream: Stream, *index: int, device: "str | torch.device" = "cpu"
                    ) -> "torch.Generator":
    """A ``torch.Generator`` on ``device`` seeded with :func:`int_seed` (default bits) of the stream."""
    import torch

    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int_seed(seed, stream, *index))
    return g


def ngspice_seed(seed: int, stream: Stream, *index: int) -> int:
    """An ngspice ``setseed`` value in [1, 2^31 - 2] (ngspice refuses 0): the engine's ``derived_seed`` formula,
    ``generate_state(1)[0] mod (2^31 - 2) + 1``, on the stream's sequence (for :data:`MONTECARLO_CHIP` exactly
    ``engine.derived_seed(seed, chip)``)."""
    return int(sequence(seed, stream, *index).generate_state(1)[0] % (2**31 - 2)) + 1


def name_index(name: str) -> int:
    """The index of a named item (a mismatch parameter) in a stream: CRC-32 of its UTF-8 name."""
    return zlib.crc32(name.encode())


def block_seed(seed: int, index: int, width: int = 1000) -> int:
    """The plain integer ``seed * width + index`` (``index < width``, checked): injective over (seed, index), so
    two user seeds never share one. For the few integer-seeded models (random networks of a calibration's checks)
    whose published calibrations were made with these values."""
    s, i, w = _nonneg("seed", seed), _nonneg("index", index), _nonneg("width", width)
    if i >= w:
        raise ValueError(f"index: expected < {w} (seed {s}'s block), got {i}: raise the width")
    return s * w + i


@dataclass(frozen=True)
class ChipBlock:
    """Monte-Carlo chip numbers (:data:`MONTECARLO_CHIP`) for the cells of a validation's chips: cell k of chip c
    under seed s is chip number ``base + per_seed * s + max(stride, n) * c + k``. The cells' draws are keyed by
    (seed, number), so the numbers need only be distinct within one seed -- the blocks of seeds s and s + 1 may
    overlap, harmlessly (``per_seed`` has no statistical role; it keeps published chips at their numbers). The
    stride widens to ``n`` for chips of more than ``stride`` cells, so two chips never share a cell."""

    base: int
    per_seed: int
    stride: int
    draws: str

    def ids(self, seed: int, chip: int, n: int) -> list[int]:
        """The chip numbers of the ``n`` cells of chip ``chip`` under ``seed``."""
        s, c, m = _nonneg("seed", seed), _nonneg("chip", chip), _nonneg("n", n)
        first = self.base + self.per_seed * s + max(self.stride, m) * c
        return [first + k for k in range(m)]
