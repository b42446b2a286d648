"""spicenet.seeds: one derivation of every random stream; each migrated site reproduces its former expression."""

import itertools
import zlib

import numpy as np
import pytest
import torch

from spicenet import seeds
from spicenet.cells.oscillator import streams as osc
from spicenet.cells.resistive import streams as res
from spicenet.cells.rng import streams as pb
from spicenet.seeds import Layout, int_seed, ngspice_seed, numpy_generator, sequence

ALL = list(seeds.streams().values())  # the core's and every family's (their streams modules are imported above)
SHARED = {0: {"MISMATCH_TRAIN_CHIP", "CHIP_CELL_Z"},                        # user seed vs chip seed
          1: {"MISMATCH_EVAL_CHIP", "CHIP_GLOBAL_Z", "RES_TRAIN_CHIP"},     # + HIGH64 vs XOR31
          3: {"RNG_BATCH", "RNG_MACHINE_X_T", "RES_VALIDATE_CHIP"},         # XOR31 vs numpy vs HIGH64
          4: {"RNG_CHIP_SAMPLES", "RNG_MACHINE_X_ALT"},                     # XOR31 vs numpy
          7: {"RNG_V0_TRIM", "RNG_MACHINE_STEP_SPINS"}}                     # chip seed, XOR31 vs numpy

SEEDS = range(51)
INDICES = range(51)


def _state(ss: np.random.SeedSequence) -> tuple[int, ...]:
    return tuple(int(w) for w in ss.generate_state(8))


def _old_seed_int(*key: int) -> int:  # the former spicenet.train.mismatch._seed_int
    a, b = np.random.SeedSequence([int(k) for k in key]).generate_state(2, dtype=np.uint32)
    return int((int(a) << 31) ^ int(b)) & ((1 << 63) - 1)


def _old_chip_seed(seed: int, stream: int, index: int) -> int:  # the former resistive.train.chip_seed
    return int(np.random.SeedSequence([int(seed), int(stream), int(index)]).generate_state(2, np.uint64)[0] >> 1)


# --------------------------------------------------------------------------------------------- properties
def test_same_inputs_same_numbers():
    for stream in ALL:
        idx = (3,) * (stream.arity or 1)
        assert _state(sequence(7, stream, *idx)) == _state(sequence(7, stream, *idx))
        assert numpy_generator(7, stream, *idx).random(4).tolist() == numpy_generator(7, stream, *idx).random(4).tolist()
        assert ngspice_seed(7, stream, *idx) == ngspice_seed(7, stream, *idx)
        if stream.layout is not Layout.NUMPY:
            assert int_seed(7, stream, *idx) == int_seed(7, stream, *idx)
            a = torch.randn(3, generator=seeds.torch_generator(7, stream, *idx))
            assert torch.equal(a, torch.randn(3, generator=seeds.torch_generator(7, stream, *idx)))


def test_int_seed_grid_has_no_collisions():
    """seeds 0..50 x indices 0..50: distinct within every stream, and across streams unless they share a word and
    a layout (then they differ in what they are keyed by: SHARED)."""
    grids = {}
    for stream in ALL:
        if stream.layout is Layout.NUMPY:
            continue
        vals = [int_seed(s, stream, i) for s in SEEDS for i in INDICES]
        assert len(set(vals)) == len(vals), stream
        assert all(0 <= v < 2**63 for v in vals)
        grids[stream] = set(vals)
    for a, b in itertools.combinations(grids, 2):
        if a.word == b.word and a.layout is b.layout:
            assert a.parent != b.parent, (a, b)
            continue
        assert not grids[a] & grids[b], (a, b)


def test_distinct_streams_give_distinct_sequences():
    shared = seeds.shared_words()
    assert {w: {s.name for s in v} for w, v in shared.items()} == SHARED  # a new stream takes a fresh word
    assert all(s.shared for v in shared.values() for s in v)
    for group in shared.values():  # a shared word: different parent or different consumption
        for a, b in itertools.combinations(group, 2):
            assert a.parent != b.parent or a.layout is not b.layout, (a, b)
    states = {}
    for stream in ALL:
        if stream.word is None or stream.word in SHARED:
            continue
        states[stream] = {_state(sequence(5, stream, i)) for i in INDICES}
    for a, b in itertools.combinations(states, 2):
        assert not states[a] & states[b], (a, b)


def test_distinct_seeds_and_indices_give_distinct_sequences():
    got = {_state(sequence(s, pb.BATCH, i)) for s in range(20) for i in range(20)}
    assert len(got) == 400
    two = {_state(sequence(3, pb.MACHINE_PAIRED, c, m)) for c in range(10) for m in range(10)}
    assert len(two) == 100


def test_ngspice_seed_range_and_engine_contract():
    from spicenet.spice.engine import derived_seed

    vals = [ngspice_seed(s, st, i) for s in SEEDS for i in INDICES for st in (seeds.MONTECARLO_CHIP, seeds.SPLIT)]
    assert all(1 <= v <= 2**31 - 2 for v in vals)
    for s, c in [(0, 0), (7, 3), (123, 999), (5, 1000)]:
        assert ngspice_seed(s, seeds.MONTECARLO_CHIP, c) == derived_seed(s, c)
        assert ngspice_seed(s, osc.PHASE_NOISE, c) == derived_seed(s, 1000 + c)  # oscillator _noise


def test_arguments_are_checked():
    with pytest.raises(ValueError):
        sequence(-1, seeds.SPLIT)
    with pytest.raises(ValueError):
        sequence(1, pb.BATCH, -2)
    with pytest.raises(ValueError):
        sequence(1, seeds.MONTECARLO_CHIP)  # one index: the chip
    with pytest.raises(ValueError):
        sequence(1, pb.CELL_NOISE, 2, 0)  # chip, cell, record
    with pytest.raises(TypeError):
        sequence(1, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sequence(1, seeds.MONTECARLO_CHIP, 2, 3)  # arity 1
    with pytest.raises(ValueError):
        int_seed(1, seeds.SPLIT)  # a numpy-only stream
    with pytest.raises(ValueError):
        int_seed(1, seeds.BASELINE_BATCH, 0, bits=63)  # 32 bits at most
    with pytest.raises(ValueError):
        seeds.block_seed(1, 1000)
    assert int_seed(4, res.EVAL_CHIP, 2, bits=31) == int_seed(4, res.EVAL_CHIP, 2, bits=64) >> 33


def test_block_seed_and_chip_blocks():
    vals = [seeds.block_seed(s, k) for s in SEEDS for k in range(1000)]
    assert len(set(vals)) == len(vals)
    assert seeds.block_seed(3, 7) == 3007
    # the former expressions: rng validation (1000 + 97 seed + 32 c + k) and whole machine (50000 + 997 seed + 1000 c)
    for s, c in itertools.product(range(4), range(5)):
        assert pb.PATCH_CELLS.ids(s, c, 9) == [1000 + 97 * s + 32 * c + k for k in range(9)]
        assert pb.MACHINE_CELLS.ids(s, c, 324) == [50000 + 997 * s + 1000 * c + k for k in range(324)]
    big = [pb.MACHINE_CELLS.ids(0, c, 1500) for c in range(3)]  # > stride cells: chips never share cells
    assert len(set(itertools.chain(*big))) == 4500


# ------------------------------------------------------------------------ migrated sites: the old expressions
@pytest.mark.parametrize("stream,const", [(seeds.SPLIT, 0x5B1D), (seeds.SUBSET, 0xBA1), (res.LEVELS, 0x6B4E),
                                          (res.SOLVER_CHECK, 0x50C4), (res.DIODE, 0xD10D)])
def test_constant_streams_reproduce_the_old_sequence(stream, const):
    for s in (0, 1, 7, 2**40):
        old = np.random.SeedSequence([int(s), const])
        assert sequence(s, stream).state == old.state
        assert _state(sequence(s, stream)) == _state(old)
        assert numpy_generator(s, stream).standard_normal(5).tolist() == \
            np.random.default_rng(old).standard_normal(5).tolist()


def test_baseline_batches_reproduce_the_old_generator():
    from spicenet.baselines.train import _batches

    for s, it in [(0, 0), (3, 17), (11, 999)]:
        old = torch.Generator().manual_seed(int(np.random.SeedSequence([s, 0xBA5E, it]).generate_state(1)[0]))
        assert torch.equal(torch.randint(0, 1000, (8,), generator=old),
                           torch.randint(0, 1000, (8,), generator=seeds.torch_generator(s, seeds.BASELINE_BATCH, it)))

    class Cfg:
        batch = 8
    old = torch.Generator().manual_seed(int(np.random.SeedSequence([5, 0xBA5E, 2]).generate_state(1)[0]))
    assert torch.equal(_batches(1000, Cfg(), 5, 2), torch.randint(0, 1000, (8,), generator=old))  # type: ignore[arg-type]


def test_dataset_splits_unchanged():
    from spicenet.data.dataset import balanced_subset, stratified_split

    y = np.repeat(np.arange(4), 25)
    tr, te = stratified_split(y, 0.2, seed=3)
    gen = np.random.default_rng(np.random.SeedSequence([3, 0x5B1D]))  # the former derivation, re-run
    train, test = [], []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[gen.permutation(idx.size)]
        test.append(idx[:5])
        train.append(idx[5:])
    a, b = np.concatenate(train), np.concatenate(test)
    assert tr.tolist() == a[gen.permutation(a.size)].tolist() and te.tolist() == b[gen.permutation(b.size)].tolist()
    gen = np.random.default_rng(np.random.SeedSequence([3, 0xBA1]))
    per = np.full(4, 2)
    per[gen.permutation(4)[:2]] += 1
    want = np.concatenate([np.flatnonzero(y == c)[gen.permutation(25)[:k]] for c, k in zip(range(4), per)])
    got = balanced_subset(y, 10, seed=3)
    assert sorted(got.tolist()) == sorted(want.tolist())


@pytest.mark.parametrize("stream,word", [
    (seeds.MISMATCH_TRAIN_CHIP, 0), (seeds.MISMATCH_EVAL_CHIP, 1), (seeds.CHIP_CELL_Z, 0),
    (seeds.CHIP_GLOBAL_Z, 1), (pb.BATCH, 3), (pb.CHIP_SAMPLES, 4), (pb.SAMPLE_CPU, 5),
    (pb.SAMPLE_CHAINS, 6), (pb.V0_TRIM, 7), (pb.FID_LOG, 8), (pb.NOMINAL, 9),
    (pb.PATCH_SURROGATE, 11), (pb.PATCH_FRESH_CHIP, 12), (pb.PATCH_FRESH_SAMPLES, 13),
    (pb.PATCH_FRESH_MANY, 14), (pb.PATCH_IDEAL, 15), (pb.MACHINE_CHIP, 21),
    (pb.MACHINE_CHAIN, 22), (pb.MACHINE_PAIRED, 23), (pb.MACHINE_ALT_CHAIN, 24),
    (pb.MACHINE_DRAW, 25), (pb.MACHINE_HELD_DRAW, 26), (pb.MACHINE_HELD_CHAIN, 27)])
def test_xor31_streams_reproduce_seed_int(stream, word):
    for s in (0, 1, 9, 2**62 + 5):
        assert int_seed(s, stream) == _old_seed_int(s, word)
        for key in [(0,), (4,), (3, 2), (2**62 + 1,)]:
            assert int_seed(s, stream, *key) == _old_seed_int(s, word, *key)


@pytest.mark.parametrize("stream,number", [(res.TRAIN_CHIP, 1), (res.EVAL_CHIP, 2),
                                           (res.VALIDATE_CHIP, 3)])
def test_resistive_chip_seeds_unchanged(stream, number):
    from spicenet.cells.resistive.train import chip_seed

    for s, i in [(0, 0), (1, 5), (42, 1234)]:
        assert int_seed(s, stream, i) == _old_chip_seed(s, number, i)
        assert chip_seed(s, stream, i) == chip_seed(s, number, i) == _old_chip_seed(s, number, i)
    with pytest.raises(ValueError):
        chip_seed(0, 4, 0)
    with pytest.raises(ValueError):
        chip_seed(0, pb.BATCH, 0)


def test_mismatch_sampler_seeds_unchanged():
    from spicenet.train.mismatch import ChipSampler, MismatchModel, ParamDist

    model = MismatchModel({"a": ParamDist(1.0, 0.1, std_global=0.05), "b": ParamDist(2.0, 0.2, positive=True)},
                          np.eye(2), ["a", "b"])
    smp = ChipSampler(model, 3, seed=5, n_eval=3, per="batch")
    assert smp.eval_seeds == [_old_seed_int(5, 1, i) for i in range(3)]
    assert smp.train_seed(step=2, batch=1) == _old_seed_int(5, 0, 2, 1)
    chip = model.sample_chip(77, 4, dtype=torch.float64)
    # the former draws: eps of parameter n from _seed_int(chip seed, 0 | 1, crc32(n)); identity correlation
    for n in ("a", "b"):
        cell = torch.randn(4, generator=torch.Generator().manual_seed(_old_seed_int(77, 0, zlib.crc32(n.encode()))),
                           dtype=torch.float64)
        glob = torch.randn((), generator=torch.Generator().manual_seed(_old_seed_int(77, 1, zlib.crc32(n.encode()))),
                           dtype=torch.float64)
        d = model.dists[n]
        if d.positive:
            sig = np.sqrt(np.log1p((d.std / d.mean) ** 2))
            want = torch.exp(np.log(d.mean) - sig ** 2 / 2 + sig * cell)
        else:
            want = d.mean + d.std_global * glob + d.std * cell
        assert torch.allclose(chip[n], want, rtol=1e-12, atol=0)


def test_rng_streams_unchanged():
    from spicenet.cells.rng import cells
    from spicenet.cells.rng.training import eval_seeds
    from spicenet.cells.rng.whole import _spins

    assert eval_seeds(4, 3) == [_old_seed_int(4, 1, i) for i in range(3)]
    for key, stream in [((3, 2), pb.MACHINE_X_T), ((4, 1), pb.MACHINE_X_ALT),
                        ((7, 1, 2, 3), pb.MACHINE_STEP_SPINS)]:
        rng = np.random.default_rng(np.random.SeedSequence([6, *key]))
        assert _spins(6, stream, *key[1:], n=16).tolist() == np.where(rng.random(16) < 0.5, -1.0, 1.0).tolist()
    for stream_no in (0, 2, 101):  # noise records: the former key (seed, chip, cell[, stream])
        key = [9, 1003, 0] + ([stream_no] if stream_no else [])
        want = np.random.default_rng(np.random.SeedSequence(key)).standard_normal((6, 2)) * np.array([1e-9, 2e-9])
        assert cells.noise_samples(9, 1003, 0, [1e-9, 2e-9], 6, stream_no).tolist() == want.tolist()


def test_rng_chip_setup_pdk_seed_unchanged():
    from spicenet.spice.engine import derived_seed

    assert ngspice_seed(7, seeds.MONTECARLO_CHIP, 3) == derived_seed(7, 3)
    assert _state(sequence(7, seeds.MONTECARLO_CHIP, 3)) == _state(np.random.SeedSequence([7, 3]))


def test_register_refuses_a_used_word(monkeypatch):
    monkeypatch.setattr(seeds, "_REGISTRY", dict(seeds._REGISTRY))
    assert seeds.register("SPLIT", 0x5B1D, layout=Layout.NUMPY, draws=seeds.SPLIT.draws) is seeds.SPLIT
    with pytest.raises(ValueError, match="already registered"):
        seeds.register("SPLIT", 0x5B1E, layout=Layout.NUMPY, draws=seeds.SPLIT.draws)
    with pytest.raises(ValueError, match="is used by"):
        seeds.register("NEW", 0xBA1, draws="x")
    with pytest.raises(ValueError, match="is used by"):
        seeds.register("NEW", 3, draws="x")  # a legacy shared word is not free for a new stream
    new = seeds.register("NEW", 0x51D, draws="x")
    assert seeds.streams()["NEW"] is new and int_seed(0, new) == int_seed(0, new)


def test_every_stream_is_documented():
    for stream in ALL:
        assert stream.draws and stream.parent and stream.index, stream
