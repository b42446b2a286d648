"""HDF5 store of simulation runs: crash-safe, resumable, readable with plain h5py.

Layout 2 (the store contract, README "Sweeps and the HDF5 store"; columnar, written by :class:`RunStore`)
-------------------------------------------------------------------------
root attrs
    ``spicenet_version``, ``ngspice_version`` (set with :meth:`RunStore.set_root_attrs`), ``created`` (ISO 8601,
    UTC), ``config`` (the sweep/calibration config as JSON text), ``store_layout`` (= 2) and ``layout`` (JSON text
    describing every group below, so a file documents itself).
``/table`` (attr ``rows`` = N): one row per run, every dataset a 1-D chunked column of length N
    ``id``, ``point`` (grid point), ``chip`` (-1 = nominal), ``seed``, ``status`` (``ok`` | ``failed`` |
    ``measure_failed``), ``error`` (``""`` when ok), ``analysis``, ``process``, ``wall_s``, ``retries`` (convergence
    retry steps), ``deck`` (row of ``/decks``), ``axis`` (row of ``/axes``, -1: none), ``alter_values`` (N x K
    float64: the chip's delta from the deck, ``alter <target> = <value>`` with the K targets such as
    ``alter xm1 delvto`` in ``/alters/target``; NaN: not altered), ``alters`` (any other alter command as text),
    ``extra`` (JSON of the other attrs, ``""`` if none);
    ``params/<name>``: float64 in SI units with attr ``unit`` (text for values that are no numbers);
    ``measure/<name>``: float64 with attr ``unit`` (NaN where it failed: status ``measure_failed``, ``error`` says
    which and why).
``/decks``: ``netlist``, ``process`` -- every distinct rendered deck once (once per point of a sweep).
``/axes``: ``name``, ``unit``, ``offset``, ``length``, ``hash`` and ``data`` -- every distinct scale vector
    (``time``, ``frequency``, ``v-sweep``) once; runs that share one (``op``/``dc``/``ac``, a fixed-step ``tran``)
    point at the same row.
``/vectors/<name>``: attrs ``name``, ``unit``, ``scalar``; ``data`` (the values of every run concatenated, float64
    or complex128 once any run's is complex), ``offset`` and ``length`` (per table row; length -1: no such vector).

So run ``k``'s ``v(out)`` is ``data[offset[k]:offset[k] + length[k]]`` and its time axis
``axes/data[axes/offset[a]:...]`` with ``a = table/axis[k]``; :func:`spicenet.open_runs` does this for you (a
pandas table, xarray arrays). A record whose id is already stored replaces its row (a failed point retried on
resume). Writes are batched: one journal write per :meth:`RunStore.append_many`, a few HDF5 operations per column
per commit (not per run).

Layout 1 (read, and still appended to when resuming an old file): one group ``/runs/<id>`` per run with attrs
``params``/``measurements``/``extra`` (JSON text), ``seed``, ``chip``, ``process``, ``status``, ``error``,
``netlist`` and one dataset per vector with attrs ``name`` and ``unit``.

Names. HDF5 treats only ``/`` as special inside a link name, so a vector or parameter name is used verbatim as
its group/dataset name -- ``f["vectors/v(out)"]`` -- except that ``%`` is written ``%25``, ``/`` is written ``%2F``
and a name that is exactly ``.`` or ``..`` is written ``%2E``/``%2E%2E`` (reversible); the exact name is kept in
the ``name`` attr. Vectors are 0-d or 1-d; real ones are stored as float64. ``compression="gzip"``/``"lzf"``
compresses the numeric columns and vector data.

Durability: why a journal plus copy-on-commit
----------------------------------------------
HDF5 is not crash-safe: a process killed while h5py is writing (or merely holding a file open in write mode with
dirty metadata cache) can leave a file that no longer opens. So the live ``<file>`` is **never opened for writing**:

1. :meth:`RunStore.append` serialises the record into ``<file>.journal`` with ONE ``os.write`` of a framed record
   ``b"SNJ1" | u64 payload length | u32 crc32(payload) | payload`` (payload = u32 JSON length, JSON metadata,
   the raw bytes of every vector). Once ``os.write`` returns the bytes belong to the kernel, so a SIGKILL of the
   process cannot lose them; to also survive a power loss / OS crash the journal is ``fsync``-ed at most every
   ``journal_fsync_s`` seconds (0 = after every append; measured ~0.4 ms per fsync on this machine's ext4, which
   would be comparable to a 0.3 ms ``.op`` solve, hence the default 0.5 s window).
2. :meth:`RunStore.commit` copies ``<file>`` to ``<file>.tmp`` (``copy_file_range``: in-kernel, a reflink on file
   systems that support it), writes the pending records into the copy, closes it, ``fsync``-s it, ``os.replace``-s
   it over ``<file>`` (atomic on POSIX), ``fsync``-s the directory and only then truncates the journal.
3. Opening with ``resume=True`` deletes a stale ``<file>.tmp`` (a kill during step 2), replays every intact journal
   record into the file (one commit) and truncates the journal. The replay stops at the first record whose frame
   or checksum is bad: a torn last record (kill in the middle of ``os.write``) is ignored, with a warning.

A SIGKILL at any moment therefore leaves a ``<file>`` that opens with plain h5py (it is always a complete file
written by a closed h5py handle) holding every record of the last commit, and every appended record is in the file
or in the journal. Replay is idempotent: the journal holds only records appended after the last completed
commit, plus -- after a kill between ``os.replace`` and the truncation -- records that are already in the file;
replaying "last write wins by id" rewrites those rows with identical content. A later record with an id already
in the file (a failed point retried on resume) replaces the old row.

``done_ids`` returns ids whose stored status is ``"ok"``; failed points are not "done", so a resumed sweep
retries them and the new record replaces the failed one.

Commit cost bound. A commit costs ``c = o + k * w``: a per-commit overhead ``o`` (copying the whole file, linear
in its size -- measured 1.6 s per 100 MB on this busy shared VM -- plus opening/closing the copy, two fsyncs and
the rename) and the writing of its ``k`` new records (layout 2: ~20-25 us per ``.op`` record of 2 vectors and
11 parameters, measured on the loaded 2-core machine, because each column is written once per commit; layout 1
paid ~1.3 ms per record, one HDF5 object per attribute). Only ``o`` is what batching must amortise. An automatic commit (triggered from ``append``) happens only when
``max(commit_interval_s, o_prev * (1 - f) / f)`` seconds have passed since the previous commit ended, where
``o_prev`` is the measured overhead of the previous commit and ``f = max_commit_fraction`` (default 0.1). So the
overhead takes at most about ``f`` of the wall time (exactly, if ``o`` did not grow between two commits; it grows
only by one batch) however large the file grows: the interval grows with the file (a 1 GB file that takes 16 s
to copy commits every ~150 s at f = 0.1, its records safe in the journal meanwhile). Pending records are also
held in memory until committed; more than ``max_pending_bytes`` of them forces a commit regardless of the
interval.

One writer per file: the journal is ``flock``-ed for the store's lifetime (released by the kernel on a kill), a
second writer gets :class:`StoreError`. Readers (:func:`read_runs`, :func:`read_run`, plain h5py) can open the
live file at any time, also while a sweep is running, because it is replaced, never modified; they see the last
commit only (records still in the journal are not visible until the next commit or ``close``).
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import functools
import json
import math
import os
import shutil
import struct
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import h5py
import numpy as np

from spicenet import __version__
from spicenet.errors import SpicenetError, UsageError

if TYPE_CHECKING:
    from spicenet.store_analysis import Runs

__all__ = [
    "RunRecord",
    "RunStore",
    "StoreError",
    "StoreExistsError",
    "JournalWarning",
    "read_runs",
    "read_run",
    "dataset_name",
    "vector_name",
    "journal_path",
    "open_runs",
    "store_layout",
]

STORE_LAYOUT = 2
#: pending runs from which their batches are written into the next commit's copy as they come (``RunStore._stream``)
STREAM_ROWS = 512
_MAGIC = b"SNJ1"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, crc32(payload)
_JSON_LEN = struct.Struct("<I")
_STATUSES = ("ok", "failed", "measure_failed")  # measure_failed: simulated, a measurement failed


class StoreError(SpicenetError):
    """The run store cannot be opened or written (in use, malformed, config mismatch on resume)."""


class StoreInputError(StoreError, UsageError):
    """The file given as a run store is not one, or (on resume) holds another sweep: bad input (CLI exit 2)."""


class StoreConfigError(StoreInputError):
    """A resume whose config differs from the one stored in the file (another sweep)."""


class StoreExistsError(StoreError, FileExistsError):
    """A new store would overwrite an existing file (pass ``resume=True`` to continue it)."""


class JournalWarning(UserWarning):
    """Part of a journal was unreadable (a torn last record after a kill) and was ignored."""


@dataclass
class RunRecord:
    """One simulated point: its inputs (params, seed, chip, process, netlist) and outputs (vectors, measurements).

    ``vectors`` maps lower-case names (``"time"``, ``"v(out)"``, ``"i(vdd)"``) to 0-d or N-d arrays; ``units`` maps
    vector names to units (a vector without an entry is stored with unit ``""``). ``chip`` is -1 for the nominal
    (mismatch-free) circuit. ``error`` is required text when ``status`` is ``"failed"`` (the simulation failed) or
    ``"measure_failed"`` (the vectors are stored, a measurement could not be made: ``error`` says which and why,
    its value is NaN) and must be None when ok.

    Layout-2 extras (all optional): ``point`` (the grid point index; default: one point per distinct netlist),
    ``param_units``/``measurement_units`` (name -> unit), ``alters`` (the per-chip ``alter`` commands applied to
    the loaded netlist, stored as the chip's delta), ``scale`` (the name of the independent vector, e.g. ``time``;
    default: the first of ``time``, ``frequency``, ``v-sweep``, ``i-sweep`` present), stored in the shared axes.
    """

    id: str
    params: dict[str, float | int | str | None]
    seed: int
    chip: int
    process: str
    status: str
    error: str | None
    netlist: str
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    measurements: dict[str, float] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    point: int | None = None
    param_units: dict[str, str] = field(default_factory=dict)
    measurement_units: dict[str, str] = field(default_factory=dict)
    alters: tuple[str, ...] = ()
    scale: str | None = None


_SCALES = ("time", "frequency", "v-sweep", "i-sweep", "temp-sweep", "res-sweep")


# --------------------------------------------------------------------------------------------------------- names


def dataset_name(vector: str) -> str:
    """Vector name -> HDF5 link name: ``%`` -> ``%25``, ``/`` -> ``%2F``, ``.``/``..`` -> ``%2E``/``%2E%2E``."""
    if not isinstance(vector, str) or vector == "":
        raise ValueError(f"vector name must be a non-empty string, got {vector!r}")
    if "\x00" in vector:
        raise ValueError(f"vector name must not contain NUL, got {vector!r}")
    if vector in (".", ".."):
        return "%2E" * len(vector)
    return vector.replace("%", "%25").replace("/", "%2F")


def vector_name(dataset: str) -> str:
    """Inverse of :func:`dataset_name`."""
    return dataset.replace("%2F", "/").replace("%2E", ".").replace("%25", "%")


def journal_path(path: str | os.PathLike[str]) -> Path:
    """The journal beside a store file: ``<file>.journal``."""
    p = Path(path)
    return p.with_name(p.name + ".journal")


def _tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


# ------------------------------------------------------------------------------------------------- validation


def _json_scalar(value: Any, what: str) -> float | int | str | bool | None:
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{what} must be a float, int or str, got {type(value).__name__} {value!r}")


def _normalise_array(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    kind = arr.dtype.kind
    if kind == "f":
        arr = arr.astype(np.float64, copy=False)
    elif kind == "c":
        arr = arr.astype(np.complex128, copy=False)
    elif kind in "iub":
        pass
    else:
        raise ValueError(f"vector {name!r} must be numeric, got dtype {arr.dtype}")
    return arr if arr.flags.c_contiguous else arr.copy(order="C")  # (ascontiguousarray would make 0-d 1-d)


def _check_int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, np.integer):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an int in [{lo}, {hi}], got {value!r}")
    return value


_PLAIN = (float, int, str, bool, type(None))


def _str_map(mapping: dict[Any, Any]) -> dict[str, str]:
    if all(type(k) is str and type(v) is str for k, v in mapping.items()):
        return dict(mapping)
    return {str(k): str(v) for k, v in mapping.items()}


def _validate(record: RunRecord) -> RunRecord:
    """Checks a record and returns a normalised copy (numpy scalars -> Python, float arrays -> float64)."""
    rid = record.id
    if (
        not isinstance(rid, str)
        or rid in ("", ".", "..")
        or "/" in rid
        or not rid.isprintable()
    ):
        raise ValueError(f"record id must be a printable string without '/', got {rid!r}")
    if record.status not in _STATUSES:
        raise ValueError(f"record {rid}: status must be 'ok' or 'failed', got {record.status!r}")
    if record.status != "ok" and not (isinstance(record.error, str) and record.error):
        raise ValueError(f"record {rid}: a {record.status} record needs error text, got {record.error!r}")
    if record.status == "ok" and record.error is not None:
        raise ValueError(f"record {rid}: an ok record must have error=None, got {record.error!r}")
    if not isinstance(record.process, str) or not record.process:
        raise ValueError(f"record {rid}: process must be a non-empty string, got {record.process!r}")
    if not isinstance(record.netlist, str):
        raise ValueError(f"record {rid}: netlist must be a string, got {type(record.netlist).__name__}")
    seed = _check_int(record.seed, f"record {rid}: seed", 0, 2**63 - 1)
    chip = _check_int(record.chip, f"record {rid}: chip", -1, 2**63 - 1)
    # (the error text is built only on the slow path: an f-string per value costs more than the check)
    params = {str(k): v if type(v) in _PLAIN else _json_scalar(v, f"record {rid}: param {k!r}")
              for k, v in record.params.items()}
    measurements = {}
    for k, raw in record.measurements.items():
        v = raw if type(raw) is float else _json_scalar(raw, f"record {rid}: measurement {k!r}")
        if isinstance(v, str) or v is None:
            raise ValueError(f"record {rid}: measurement {k!r} must be a number, got {v!r}")
        measurements[str(k)] = float(v)
    vectors = {}
    for name, arr in record.vectors.items():
        dataset_name(name)  # raises on empty / NUL names
        vectors[name] = _normalise_array(name, arr)
        if vectors[name].ndim > 1:
            raise ValueError(f"record {rid}: vector {name!r} must be 0-d or 1-d, got shape {vectors[name].shape}")
    units = {}
    for name, unit in record.units.items():
        if name not in vectors:
            raise ValueError(f"record {rid}: unit given for unknown vector {name!r}")
        if not isinstance(unit, str):
            raise ValueError(f"record {rid}: unit of {name!r} must be a string, got {unit!r}")
        units[name] = unit
    if not isinstance(record.attrs, dict):
        raise ValueError(f"record {rid}: attrs must be a dict (JSON-able), got {type(record.attrs).__name__}")
    attrs = dict(record.attrs)  # JSON-ability is checked where they are journaled (as JSON), once
    return RunRecord(
        id=rid,
        params=params,
        seed=seed,
        chip=chip,
        process=record.process,
        status=record.status,
        error=record.error,
        netlist=record.netlist,
        vectors=vectors,
        units={n: units.get(n, "") for n in vectors},
        measurements=measurements,
        attrs=attrs,
        point=None if record.point is None else _check_int(record.point, "record point", 0, 2**62),
        param_units=_str_map(record.param_units),
        measurement_units=_str_map(record.measurement_units),
        alters=tuple(record.alters) if all(type(c) is str for c in record.alters) else tuple(map(str, record.alters)),
        scale=record.scale if record.scale in vectors else next((n for n in _SCALES if n in vectors), None),
    )


def _validate_batch(batch: RecordBatch) -> None:
    """The checks of :func:`_validate` on columns: ids, statuses and errors, seeds and chips, names; ValueError
    naming the first bad run."""
    n = len(batch.ids)
    for name in ("status", "error", "process", "analysis", "extra", "alters", "scale", "scale_units"):
        if len(getattr(batch, name)) != n:
            raise ValueError(f"record batch: {name} has {len(getattr(batch, name))} entries for {n} runs")
    for name in ("seed", "chip", "point", "deck", "wall_s", "retries", "altered"):
        if getattr(batch, name).shape != (n,):
            raise ValueError(f"record batch: {name} has shape {getattr(batch, name).shape} for {n} runs")
    joined = "".join(batch.ids)
    if "/" in joined or not joined.isprintable() or not all(batch.ids) or {".", ".."} & set(batch.ids) \
            or not all(type(i) is str for i in batch.ids):
        bad = next(i for i in batch.ids if not isinstance(i, str) or i in ("", ".", "..") or "/" in i
                   or not i.isprintable())
        raise ValueError(f"record id must be a printable string without '/', got {bad!r}")
    if not set(batch.status) <= set(_STATUSES):
        where = next(k for k, st in enumerate(batch.status) if st not in _STATUSES)
        raise ValueError(f"record {batch.ids[where]}: status must be 'ok' or 'failed', got {batch.status[where]!r}")
    for rid, st, err in zip(batch.ids, batch.status, batch.error):
        if (st == "ok") == bool(err) or not isinstance(err, str):
            raise ValueError(f"record {rid}: a {st} record needs error text" if st != "ok"
                             else f"record {rid}: an ok record must have no error, got {err!r}")
    if not all(isinstance(p, str) and p for p in set(batch.process)):
        raise ValueError(f"record batch: process must be non-empty strings, got {sorted(set(batch.process))!r}")
    if n and (batch.seed.min() < 0 or batch.chip.min() < -1 or (batch.point < -1).any()):
        raise ValueError("record batch: seeds must be >= 0, chips >= -1, points >= 0")
    if n and (batch.deck.min() < 0 or batch.deck.max() >= len(batch.netlists)):
        raise ValueError("record batch: deck indices out of range")
    for vec in list(batch.vectors.values()) + ([batch.scales] if batch.scales is not None else []):
        if vec.lengths.shape != (n,) or int(np.maximum(vec.lengths, 0).sum()) != vec.data.size:
            raise ValueError("record batch: a vector's lengths do not match its data")
        if vec.data.dtype.kind not in "fciub":
            raise ValueError(f"record batch: vectors must be numeric, got dtype {vec.data.dtype}")
    for name in batch.vectors:
        dataset_name(name)
    for group in (batch.params, batch.measure):
        for col in group.values():
            if col.values.shape != (n,) or col.present.shape != (n,):
                raise ValueError("record batch: a parameter or measurement column has the wrong length")


# ---------------------------------------------------------------------------------------------------- journal


def _encode(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """One framed journal record: magic | u64 len | u32 crc32 | (u32 json len | json | raw array bytes)."""
    layout = []
    blobs = []
    offset = 0
    for name, arr in arrays.items():
        raw = arr.tobytes()
        layout.append([name, arr.dtype.str, list(arr.shape), offset, len(raw)])
        blobs.append(raw)
        offset += len(raw)
    head = json.dumps({"kind": kind, "meta": meta, "arrays": layout}).encode()
    payload = b"".join([_JSON_LEN.pack(len(head)), head, *blobs])
    return _FRAME.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    (n,) = _JSON_LEN.unpack_from(payload, 0)
    head = json.loads(payload[_JSON_LEN.size : _JSON_LEN.size + n])
    base = _JSON_LEN.size + n
    arrays = {}
    for name, dtype, shape, offset, nbytes in head["arrays"]:
        buf = payload[base + offset : base + offset + nbytes]
        arrays[name] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape).copy()
    return head["kind"], head["meta"], arrays


def _record_to_journal(record: RunRecord, netlist_known: bool = False) -> bytes:
    """``netlist_known``: the netlist equals the previous journal record's (written as null: smaller, faster)."""
    meta = {
        "id": record.id,
        "params": record.params,
        "seed": record.seed,
        "chip": record.chip,
        "process": record.process,
        "status": record.status,
        "error": record.error,
        "netlist": None if netlist_known else record.netlist,
        "units": record.units,
        "measurements": record.measurements,
        "attrs": record.attrs,
        "order": list(record.vectors),
        "point": record.point,
        "param_units": record.param_units,
        "measurement_units": record.measurement_units,
        "alters": list(record.alters),
        "scale": record.scale,
    }
    return _encode("run", meta, record.vectors)


def _record_from_journal(meta: dict[str, Any], arrays: dict[str, np.ndarray], last_netlist: str = "") -> RunRecord:
    return RunRecord(
        id=meta["id"],
        params=meta["params"],
        seed=meta["seed"],
        chip=meta["chip"],
        process=meta["process"],
        status=meta["status"],
        error=meta["error"],
        netlist=last_netlist if meta["netlist"] is None else meta["netlist"],
        vectors={name: arrays[name] for name in meta["order"]},
        units=meta["units"],
        measurements=meta["measurements"],
        attrs=meta["attrs"],
        point=meta.get("point"),
        param_units=meta.get("param_units", {}),
        measurement_units=meta.get("measurement_units", {}),
        alters=tuple(meta.get("alters", ())),
        scale=meta.get("scale"),
    )


def _read_journal(fd: int, path: Path) -> list[tuple[str, dict[str, Any], dict[str, np.ndarray]]]:
    """All intact records of a journal, in order; stops (with a JournalWarning) at the first damaged one."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    out: list[tuple[str, dict[str, Any], dict[str, np.ndarray]]] = []
    pos = 0
    while pos < len(data):
        problem = None
        if len(data) - pos < _FRAME.size:
            problem = "truncated frame header"
        else:
            magic, length, crc = _FRAME.unpack_from(data, pos)
            start = pos + _FRAME.size
            if magic != _MAGIC:
                problem = "bad magic"
            elif start + length > len(data):
                problem = "truncated record"
            elif zlib.crc32(data[start : start + length]) != crc:
                problem = "checksum mismatch"
        if problem is not None:
            warnings.warn(
                f"journal {path}: ignored {len(data) - pos} bytes from offset {pos} ({problem}; "
                f"a record torn by a kill); {len(out)} intact records replayed",
                JournalWarning,
                stacklevel=3,
            )
            break
        out.append(_decode(data[start : start + length]))
        pos = start + length
    return out


# ---------------------------------------------------------------------------------------------------- h5 I/O


_STR_DTYPE = h5py.string_dtype("utf-8")


@functools.lru_cache(maxsize=None)
def _h5_types() -> tuple[Any, Any]:
    """(variable-length UTF-8 string type id, scalar dataspace id), made once: ~25 us each to create."""
    return h5py.h5t.py_create(_STR_DTYPE, logical=True), h5py.h5s.create(h5py.h5s.SCALAR)


def _put_attr(oid: Any, name: str, value: str | np.integer) -> None:
    """Creates one attribute with h5py's low-level API (~2x faster than ``obj.attrs[name] = value``, which
    matters at thousands of records per second); strings become variable-length UTF-8 scalars exactly as
    h5py's high-level API writes them."""
    str_tid, scalar = _h5_types()
    if isinstance(value, str):
        arr = np.array(value, dtype=_STR_DTYPE)
        tid = str_tid
    else:
        arr = np.asarray(value)
        tid = h5py.h5t.py_create(arr.dtype)
    attr = h5py.h5a.create(oid, name.encode(), tid, scalar)
    attr.write(arr)


def _write_group(runs: h5py.Group, record: RunRecord, compression: str | None, compress_min_len: int) -> None:
    if record.id in runs:
        del runs[record.id]
    gid = h5py.h5g.create(runs.id, record.id.encode())
    _put_attr(gid, "params", json.dumps(record.params, sort_keys=True))
    _put_attr(gid, "seed", np.int64(record.seed))
    _put_attr(gid, "chip", np.int64(record.chip))
    _put_attr(gid, "process", record.process)
    _put_attr(gid, "status", record.status)
    if record.error is not None:
        _put_attr(gid, "error", record.error)
    _put_attr(gid, "netlist", record.netlist)
    _put_attr(gid, "measurements", json.dumps(record.measurements, sort_keys=True))
    _put_attr(gid, "extra", json.dumps(record.attrs, sort_keys=True))
    group = None
    for name, arr in record.vectors.items():
        key = dataset_name(name)
        if compression is not None and arr.ndim >= 1 and arr.size >= compress_min_len:
            group = group or h5py.Group(gid)
            did = group.create_dataset(key, data=arr, compression=compression, shuffle=True, chunks=True).id
        else:
            space = _h5_types()[1] if arr.ndim == 0 else h5py.h5s.create_simple(arr.shape)
            did = h5py.h5d.create(gid, key.encode(), h5py.h5t.py_create(arr.dtype), space)
            if arr.size:
                did.write(h5py.h5s.ALL, h5py.h5s.ALL, arr)
        _put_attr(did, "name", name)
        _put_attr(did, "unit", record.units.get(name, ""))


_MISSING = object()


def _get_attr(oid: Any, name: str, default: Any = _MISSING) -> Any:
    """Reads one scalar attribute with h5py's low-level API (~2x faster than ``obj.attrs[name]``); variable-length
    strings come back as ``str``. A missing attribute gives ``default`` (KeyError when none is given)."""
    key = name.encode()
    if default is not _MISSING and not h5py.h5a.exists(oid, key):
        return default
    attr = h5py.h5a.open(oid, key)
    dtype = attr.dtype
    arr = np.zeros(attr.shape or (), dtype=dtype)
    attr.read(arr, mtype=h5py.h5t.py_create(dtype))
    value = arr[()] if arr.ndim == 0 else arr
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _read_group(rid: str, g: h5py.Group, load_vectors: bool = True) -> RunRecord:
    gid = g.id
    vectors = {}
    units = {}
    for key in gid if load_vectors else ():  # link names (bytes)
        did = h5py.h5o.open(gid, key)
        if not isinstance(did, h5py.h5d.DatasetID):
            continue
        dtype = did.dtype
        shape = did.shape
        arr = np.empty(shape if shape is not None else (0,), dtype=dtype)
        if arr.size:
            did.read(h5py.h5s.ALL, h5py.h5s.ALL, arr, mtype=h5py.h5t.py_create(dtype))
        name = str(_get_attr(did, "name", vector_name(key.decode())))
        vectors[name] = arr
        units[name] = str(_get_attr(did, "unit", ""))
    error = _get_attr(gid, "error", None)
    return RunRecord(
        id=rid,
        params=json.loads(_get_attr(gid, "params")),
        seed=int(_get_attr(gid, "seed")),
        chip=int(_get_attr(gid, "chip")),
        process=str(_get_attr(gid, "process")),
        status=str(_get_attr(gid, "status")),
        error=None if error is None else str(error),
        netlist=str(_get_attr(gid, "netlist")),
        vectors=vectors,
        units=units,
        measurements=json.loads(_get_attr(gid, "measurements", "{}")),
        attrs=json.loads(_get_attr(gid, "extra", "{}")),
    )


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(src: Path, dst: Path) -> None:
    """In-kernel copy (``copy_file_range``: a reflink where the file system supports it), shutil fallback."""
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        copied = 0
        try:
            while copied < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, 1 << 20)
            copied = size
        if copied != size:
            raise StoreError(f"copying {src} to {dst} stopped at {copied} of {size} bytes")


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


# ----------------------------------------------------------------------------------------------------- store


# ------------------------------------------------------------------------------------------ layout 2 (columnar)

_LAYOUT_DOC = {
    "store_layout": 2,
    "table": "/table: one row per run, every dataset of the group (and of its subgroups) is a column of the same "
             "length (attr 'rows'): id, point, chip, seed, status (ok | failed | measure_failed), error, analysis, "
             "process, wall_s, retries (convergence retry steps), deck (row of /decks), axis (row of /axes, -1: none), "
             "alter_values (N x targets: the chip's 'alter <target> = <value>' deltas, NaN: none; targets in "
             "/alters/target), alters (other alter commands as text, one per line), extra (JSON of other attrs)",
    "params": "/table/params/<name>: one column per parameter, float64 in SI units (attr 'unit'), or text",
    "measure": "/table/measure/<name>: one column per measurement, float64 (attr 'unit'); NaN where it failed "
               "(status measure_failed, error says why)",
    "decks": "/decks/netlist: each distinct rendered netlist once (a run's deck = netlist + its alters)",
    "axes": "/axes: each distinct scale vector (time, frequency, v-sweep, ...) once: name, unit, offset, length "
            "into data; runs that share an axis (op/dc/ac, fixed-step tran) point at the same row",
    "vectors": "/vectors/<name>/: attrs 'name' (exact vector name), 'unit'; 'data' (all runs' values "
               "concatenated), 'offset' and 'length' (one per table row; length -1: the run has no such vector)",
    "names": "group/dataset names are vector/parameter names with '%' -> '%25', '/' -> '%2F'",
}
_COLUMNS = {  # base columns of /table: dtype kind and fill value
    "id": ("str", ""), "point": ("i8", -1), "chip": ("i8", -1), "seed": ("i8", -1), "status": ("str", ""),
    "error": ("str", ""), "analysis": ("str", ""), "process": ("str", ""), "wall_s": ("f8", np.nan),
    "retries": ("i8", 0), "deck": ("i8", -1), "axis": ("i8", -1), "alters": ("str", ""), "extra": ("str", ""),
}
_CHUNK = 8192  # rows per HDF5 chunk of a per-run column in a large store
_MIN_CHUNK = 256  # ... and in a small one (see chunk_rows)
_INDEX_CHUNK = 64  # rows per chunk of the small index tables (decks, axes, alter targets)


def chunk_rows(expected_rows: int | None) -> int:
    """Rows per chunk of the per-run columns for a store expected to hold ``expected_rows`` runs: the next power
    of two, between ``_MIN_CHUNK`` and ``_CHUNK`` (None: ``_CHUNK``). Performance only -- a chunk is allocated
    whole, so a 4-run sweep in 8192-row chunks writes (and fsyncs) ~3 MB of fill values; a store that outgrows its
    chunks just has more of them."""
    if expected_rows is None:
        return _CHUNK
    return int(min(_CHUNK, max(_MIN_CHUNK, 1 << max(0, int(expected_rows) - 1).bit_length())))


def _new_column_hl(group: h5py.Group, name: str, kind: str, rows: int, compression: str | None,
                   chunk: int = _CHUNK) -> h5py.Dataset:
    if kind == "str":
        return group.create_dataset(name, shape=(rows,), maxshape=(None,), dtype=_STR_DTYPE, chunks=(chunk,))
    dtype = np.dtype(kind)
    fill = np.nan if dtype.kind in "fc" else (-1 if dtype.kind == "i" else 0)
    return group.create_dataset(name, shape=(rows,), maxshape=(None,), dtype=dtype, chunks=(chunk,),
                                fillvalue=fill, compression=compression)


@functools.lru_cache(maxsize=None)
def _column_plist(kind: str, compression: str | None, chunk: int) -> tuple[Any, Any]:
    """(type id, creation property list) of a column as :func:`_new_column_hl` makes it (taken from one made in
    memory), so that further columns are made with two low-level calls (a quarter of the high-level cost)."""
    with h5py.File(f"spicenet-plist-{kind}-{compression}-{chunk}", "w", driver="core", backing_store=False) as f:
        ds = _new_column_hl(f, "x", kind, 0, compression, chunk)
        return ds.id.get_type(), ds.id.get_create_plist()


def _new_column(group: h5py.Group, name: str, kind: str, rows: int, compression: str | None,
                chunk: int = _CHUNK) -> h5py.Dataset:
    """A 1-D chunked column of ``rows`` fill values, unlimited in length (see ``_new_column_hl``)."""
    tid, dcpl = _column_plist(kind, compression, chunk)
    space = h5py.h5s.create_simple((rows,), (h5py.h5s.UNLIMITED,))
    return h5py.Dataset(h5py.h5d.create(group.id, name.encode(), tid, space, dcpl=dcpl))


@functools.lru_cache(maxsize=None)
def _str_mtype() -> Any:
    """The memory type of an object array of ``str`` written into a variable-length UTF-8 dataset."""
    return h5py.h5t.py_create(_STR_DTYPE)


def _open(group: h5py.Group, name: str) -> h5py.Dataset:
    """``group[name]`` for a dataset, with h5py's low-level open (a third of the high-level lookup's cost)."""
    return h5py.Dataset(h5py.h5d.open(group.id, name.encode()))


def _extent(ds: h5py.Dataset, shape: tuple[int, ...]) -> None:
    """``ds.resize(shape)`` without the high-level checks (the dataset is chunked with unlimited max shape)."""
    ds.id.set_extent(shape)


def _write_block(ds: h5py.Dataset, start: int, values: np.ndarray) -> None:
    """``ds[start:start + len(values)] = values`` with h5py's low-level calls (one hyperslab write; the high-level
    ``__setitem__`` costs ~0.2 ms of selection and type handling per call, a commit makes dozens)."""
    values = np.ascontiguousarray(values)
    if values.dtype.kind == "O":
        mtype = _str_mtype()
    else:
        if values.dtype != ds.dtype:
            values = values.astype(ds.dtype)
        mtype = h5py.h5t.py_create(values.dtype)
    if not values.size:
        return
    fspace = ds.id.get_space()
    fspace.select_hyperslab((start,) + (0,) * (values.ndim - 1), values.shape)
    ds.id.write(h5py.h5s.create_simple(values.shape), fspace, values, mtype=mtype)


def _write_at(ds: h5py.Dataset, rows: np.ndarray, values: np.ndarray, contiguous: bool) -> None:
    if contiguous:
        _write_block(ds, int(rows[0]), values)
    else:
        order = np.argsort(rows, kind="stable")
        r, v = rows[order], values[order]
        keep = np.r_[r[1:] != r[:-1], True]  # the last write of a row wins
        ds[r[keep].tolist()] = v[keep]


def _text_column(values: list[str]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _promote_to_text(group: h5py.Group, name: str, rows: int) -> h5py.Dataset:
    old = group[name]
    values = old[:]
    attrs = dict(old.attrs)
    chunk = old.chunks[0] if old.chunks else _CHUNK
    del group[name]
    ds = _new_column(group, name, "str", rows, None, chunk)
    ds[: len(values)] = np.array(["" if np.isnan(v) else repr(float(v)) for v in values], dtype=object)
    ds.attrs.update(attrs)
    return ds


def _axis_key(name: str, arr: np.ndarray) -> tuple[str, bytes]:
    import hashlib

    return name, hashlib.blake2b(arr.dtype.str.encode() + arr.tobytes(), digest_size=16).digest()


@functools.lru_cache(maxsize=4096)
def _extra_cached(items: tuple[tuple[str, Any], ...]) -> str:
    return json.dumps(dict(items), sort_keys=True)


def _extra_text(attrs: dict[str, Any]) -> str:
    """JSON text of a run's other attrs; the same few dicts ({mode, noise_seed}) repeat over runs: cached."""
    try:
        return _extra_cached(tuple(sorted(attrs.items())))
    except TypeError:  # unhashable values (lists, dicts)
        return json.dumps(attrs, sort_keys=True)


def _split_alters(commands: tuple[str, ...]) -> tuple[list[tuple[str, float]], list[str]]:
    """``alter <device> [<param>] = <number>`` commands as (target, value) pairs; anything else stays text."""
    numeric, text = [], []
    for command in commands:
        target, sep, value = command.rpartition("=")
        try:
            numeric.append((" ".join(target.split()), float(value))) if sep and target.strip() else text.append(command)
        except ValueError:
            text.append(command)
    return numeric, text


# ------------------------------------------------------------------------------------------- records as columns


@dataclass
class NamedColumn:
    """One parameter or measurement of many runs: ``values`` (float64, or object: str | float | None), ``present``
    (the runs that have it), ``unit`` (the first non-empty unit the runs give it)."""

    values: np.ndarray
    present: np.ndarray
    unit: str = ""


@dataclass
class VectorColumn:
    """One vector of many runs: ``data`` (their values concatenated, 1-D), ``lengths`` (per run, -1: the run has
    none), ``unit`` (of its first run that has it), ``zero_d`` (per run: a 0-d array; None: none is)."""

    data: np.ndarray
    lengths: np.ndarray
    unit: str = ""
    zero_d: np.ndarray | None = None

    @property
    def scalar(self) -> bool:
        """Every run that has the vector has a 0-d array (the group's ``scalar`` attr)."""
        present = self.lengths >= 0
        return bool(self.zero_d is not None and np.all(self.zero_d[present])) if present.any() else True


def _pack_strs(values: list[str]) -> Any:
    """A text column for JSON: ``{"c": value, "n": count}`` when every entry is the same, else the list."""
    if values and values.count(values[0]) == len(values):
        return {"c": values[0], "n": len(values)}
    return values


def _unpack_strs(packed: Any) -> list[str]:
    return [packed["c"]] * packed["n"] if isinstance(packed, dict) else list(packed)


@dataclass
class RecordBatch:
    """Many records as columns: what the store journals and commits (:meth:`RunStore.append_batch`; ``append``
    and ``append_many`` make one from validated :class:`RunRecord` objects). Per run: ``ids``, ``status``, ``error``
    (``""`` when none), ``seed``, ``chip``, ``point`` (-1: one point per distinct netlist), ``process``, ``deck``
    (an index into ``netlists``), ``analysis``, ``wall_s`` (NaN: none), ``retries`` (convergence retry steps),
    ``extra`` (JSON text of the other attrs, ``""`` if none), ``alters`` (non-numeric alter commands, one per
    line), ``alter_values`` (runs x ``alter_targets``, NaN: not altered; ``altered``: the runs with any), the
    ``params``/``measure`` columns and the ``vectors``; ``scale`` per run (None: no axis) with its values in
    ``scales`` (float64) and its unit in ``scale_units``."""

    ids: list[str]
    status: list[str]
    error: list[str]
    seed: np.ndarray
    chip: np.ndarray
    point: np.ndarray
    process: list[str]
    netlists: list[str]
    deck: np.ndarray
    analysis: list[str]
    wall_s: np.ndarray
    retries: np.ndarray
    extra: list[str]
    alters: list[str]
    alter_targets: list[str]
    alter_values: np.ndarray
    altered: np.ndarray
    params: dict[str, NamedColumn] = field(default_factory=dict)
    measure: dict[str, NamedColumn] = field(default_factory=dict)
    vectors: dict[str, VectorColumn] = field(default_factory=dict)
    scale: list[str | None] = field(default_factory=list)
    scale_units: list[str] = field(default_factory=list)
    scales: VectorColumn | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Roughly what it holds in memory (the pending-bytes cap)."""
        vec = sum(c.data.nbytes for c in self.vectors.values()) + (self.scales.data.nbytes if self.scales else 0)
        return vec + 256 * len(self.ids)

    # -- from records -------------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: list[RunRecord]) -> "RecordBatch":
        """Columns of validated records (``_validate``); ValueError naming a record whose attrs are not JSON-able."""
        n = len(records)
        netlists: dict[str, int] = {}
        deck = np.empty(n, dtype=np.int64)
        base: dict[str, list[Any]] = {k: [] for k in ("status", "error", "process", "analysis", "extra", "alters")}
        wall = np.empty(n)
        retries = np.zeros(n, dtype=np.int64)
        numeric: list[list[tuple[str, float]]] = []
        for k, rec in enumerate(records):
            deck[k] = netlists.setdefault(rec.netlist, len(netlists))
            attrs = dict(rec.attrs)
            tries = attrs.pop("retries", [])
            base["status"].append(rec.status)
            base["error"].append(rec.error or "")
            base["process"].append(rec.process)
            base["analysis"].append(str(attrs.pop("analysis", "") or ""))
            w = attrs.pop("wall_s", None)
            wall[k] = np.nan if w is None else float(w)
            retries[k] = len(tries) if isinstance(tries, list) else int(tries or 0)
            if tries:
                attrs["retries"] = tries
            try:
                base["extra"].append(_extra_text(attrs) if attrs else "")
            except (TypeError, ValueError) as exc:
                raise ValueError(f"record {rec.id}: attrs must be JSON-able ({exc})") from None
            pairs, text = _split_alters(rec.alters)
            base["alters"].append("\n".join(text))
            numeric.append(pairs)
        targets, values = _alter_matrix(numeric)
        scale = [rec.scale for rec in records]
        scales = _vector_column([None if s is None else np.asarray(r.vectors[s], dtype=np.float64).reshape(-1)
                                 for r, s in zip(records, scale)], "")
        return cls(
            ids=[rec.id for rec in records], status=base["status"], error=base["error"],
            seed=np.array([rec.seed for rec in records], dtype=np.int64),
            chip=np.array([rec.chip for rec in records], dtype=np.int64),
            point=np.array([-1 if rec.point is None else rec.point for rec in records], dtype=np.int64),
            process=base["process"], netlists=list(netlists), deck=deck, analysis=base["analysis"], wall_s=wall,
            retries=retries, extra=base["extra"], alters=base["alters"], alter_targets=list(targets),
            alter_values=values, altered=np.array([bool(p) for p in numeric], dtype=bool),
            params=_named_columns(records, "params", "param_units"),
            measure=_named_columns(records, "measurements", "measurement_units"),
            vectors=_record_vectors(records), scale=scale,
            scale_units=[rec.units.get(s, "") if s is not None else "" for rec, s in zip(records, scale)],
            scales=scales)

    # -- combining ----------------------------------------------------------------------------------------
    @classmethod
    def concat(cls, batches: list["RecordBatch"]) -> "RecordBatch":
        """One batch of the runs of ``batches`` in order (columns a batch lacks: absent for its runs)."""
        if len(batches) == 1:
            return batches[0]
        sizes = [len(b) for b in batches]
        netlists: dict[str, int] = {}
        decks = []
        for b in batches:
            remap = np.array([netlists.setdefault(text, len(netlists)) for text in b.netlists], dtype=np.int64)
            decks.append(remap[b.deck] if len(b.deck) else b.deck)
        targets: dict[str, int] = {}
        for b in batches:
            for t in b.alter_targets:
                targets.setdefault(t, len(targets))
        values = np.full((sum(sizes), len(targets)), np.nan)
        row = 0
        for b, size in zip(batches, sizes):
            if b.alter_targets:
                values[row:row + size][:, [targets[t] for t in b.alter_targets]] = b.alter_values
            row += size
        scales = [b.scales for b in batches]
        return cls(
            ids=[i for b in batches for i in b.ids], status=[s for b in batches for s in b.status],
            error=[e for b in batches for e in b.error], seed=np.concatenate([b.seed for b in batches]),
            chip=np.concatenate([b.chip for b in batches]), point=np.concatenate([b.point for b in batches]),
            process=[p for b in batches for p in b.process], netlists=list(netlists), deck=np.concatenate(decks),
            analysis=[a for b in batches for a in b.analysis], wall_s=np.concatenate([b.wall_s for b in batches]),
            retries=np.concatenate([b.retries for b in batches]), extra=[e for b in batches for e in b.extra],
            alters=[a for b in batches for a in b.alters], alter_targets=list(targets), alter_values=values,
            altered=np.concatenate([b.altered for b in batches]),
            params=_concat_named([b.params for b in batches], sizes),
            measure=_concat_named([b.measure for b in batches], sizes),
            vectors=_concat_vectors([b.vectors for b in batches], sizes),
            scale=[s for b in batches for s in b.scale], scale_units=[u for b in batches for u in b.scale_units],
            scales=_concat_vectors([{"": s} if s is not None else {} for s in scales], sizes).get(""))

    def select(self, rows: np.ndarray) -> "RecordBatch":
        """The runs at ``rows`` (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        idx = rows.tolist()

        def pick(values: list[Any]) -> list[Any]:
            return [values[k] for k in idx]

        return RecordBatch(
            ids=pick(self.ids), status=pick(self.status), error=pick(self.error), seed=self.seed[rows],
            chip=self.chip[rows], point=self.point[rows], process=pick(self.process), netlists=self.netlists,
            deck=self.deck[rows], analysis=pick(self.analysis), wall_s=self.wall_s[rows],
            retries=self.retries[rows], extra=pick(self.extra), alters=pick(self.alters),
            alter_targets=self.alter_targets, alter_values=self.alter_values[rows], altered=self.altered[rows],
            params={k: NamedColumn(c.values[rows], c.present[rows], c.unit) for k, c in self.params.items()},
            measure={k: NamedColumn(c.values[rows], c.present[rows], c.unit) for k, c in self.measure.items()},
            vectors={k: _select_vector(c, rows) for k, c in self.vectors.items()}, scale=pick(self.scale),
            scale_units=pick(self.scale_units),
            scales=None if self.scales is None else _select_vector(self.scales, rows))

    def latest(self) -> "RecordBatch":
        """The last run of every id, in the order of those last runs (a later record of an id replaces it)."""
        if len(set(self.ids)) == len(self.ids):
            return self
        last = {rid: k for k, rid in enumerate(self.ids)}
        return self.select(np.array(sorted(last.values()), dtype=np.int64))

    # -- back to records (layout 1, tests) ----------------------------------------------------------------
    def to_records(self) -> list[RunRecord]:
        out = []
        vec_offsets = {k: _offsets(c.lengths) for k, c in self.vectors.items()}
        scale_offsets = _offsets(self.scales.lengths) if self.scales is not None else None
        for k, rid in enumerate(self.ids):
            vectors: dict[str, np.ndarray] = {}
            units: dict[str, str] = {}
            scale = self.scale[k]
            if scale is not None and self.scales is not None and scale_offsets is not None:
                o, n = int(scale_offsets[k]), int(self.scales.lengths[k])
                vectors[scale] = self.scales.data[o:o + n].copy()
                units[scale] = self.scale_units[k]
            for name, col in self.vectors.items():
                n = int(col.lengths[k])
                if n < 0:
                    continue
                o = int(vec_offsets[name][k])
                arr = col.data[o:o + n].copy()
                vectors[name] = arr.reshape(()) if col.zero_d is not None and col.zero_d[k] else arr
                units[name] = col.unit
            extra = json.loads(self.extra[k]) if self.extra[k] else {}
            attrs = {"analysis": self.analysis[k], "wall_s": None if np.isnan(self.wall_s[k]) else float(self.wall_s[k]),
                     "retries": extra.pop("retries", []), **extra}
            alters = [f"{t} = {float(v)!r}" for t, v in zip(self.alter_targets, self.alter_values[k].tolist())
                      if not math.isnan(v)]
            out.append(RunRecord(
                id=rid, params={n: _named_value(c, k) for n, c in self.params.items() if c.present[k]},
                seed=int(self.seed[k]), chip=int(self.chip[k]), process=self.process[k], status=self.status[k],
                error=self.error[k] or None, netlist=self.netlists[int(self.deck[k])], vectors=vectors, units=units,
                measurements={n: float(c.values[k]) for n, c in self.measure.items() if c.present[k]}, attrs=attrs,
                point=None if self.point[k] < 0 else int(self.point[k]),
                param_units={n: c.unit for n, c in self.params.items()},
                measurement_units={n: c.unit for n, c in self.measure.items()},
                alters=tuple(alters + (self.alters[k].split("\n") if self.alters[k] else [])), scale=scale))
        return out

    # -- journal ------------------------------------------------------------------------------------------
    def encode(self) -> bytes:
        """One framed journal record (kind ``batch``) of the whole batch."""
        arrays: dict[str, np.ndarray] = {"seed": self.seed, "chip": self.chip, "point": self.point, "deck": self.deck,
                                         "wall_s": self.wall_s, "retries": self.retries,
                                         "alter_values": self.alter_values, "altered": self.altered}
        named: dict[str, list[Any]] = {"params": [], "measure": []}
        for group in ("params", "measure"):
            for k, (name, col) in enumerate(getattr(self, group).items()):
                text = col.values.dtype.kind == "O"
                named[group].append([name, col.unit, text, col.values.tolist() if text else None])
                if not text:
                    arrays[f"{group}{k}"] = col.values
                arrays[f"{group}{k}p"] = col.present
        vectors = []
        for k, (name, col) in enumerate(self.vectors.items()):
            vectors.append([name, col.unit, col.zero_d is not None])
            arrays[f"v{k}"], arrays[f"v{k}n"] = col.data, col.lengths
            if col.zero_d is not None:
                arrays[f"v{k}z"] = col.zero_d
        if self.scales is not None:
            arrays["s"], arrays["sn"] = self.scales.data, self.scales.lengths
        meta = {"ids": self.ids, "status": _pack_strs(self.status), "error": _pack_strs(self.error),
                "process": _pack_strs(self.process), "netlists": self.netlists,
                "analysis": _pack_strs(self.analysis), "extra": _pack_strs(self.extra),
                "alters": _pack_strs(self.alters), "alter_targets": self.alter_targets, "named": named,
                "vectors": vectors, "scale": self.scale if None in self.scale else _pack_strs(self.scale),  # type: ignore[arg-type]
                "scale_units": _pack_strs(self.scale_units), "has_scales": self.scales is not None}
        return _encode("batch", meta, arrays)

    @classmethod
    def decode(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "RecordBatch":
        groups: dict[str, dict[str, NamedColumn]] = {"params": {}, "measure": {}}
        for group in groups:
            for k, (name, unit, text, values) in enumerate(meta["named"][group]):
                vals = np.array(values, dtype=object) if text else arrays[f"{group}{k}"]
                groups[group][name] = NamedColumn(vals, arrays[f"{group}{k}p"].astype(bool), unit)
        vectors = {name: VectorColumn(arrays[f"v{k}"], arrays[f"v{k}n"], unit,
                                      arrays[f"v{k}z"].astype(bool) if zero_d else None)
                   for k, (name, unit, zero_d) in enumerate(meta["vectors"])}
        return cls(
            ids=list(meta["ids"]), status=_unpack_strs(meta["status"]), error=_unpack_strs(meta["error"]),
            seed=arrays["seed"], chip=arrays["chip"], point=arrays["point"], process=_unpack_strs(meta["process"]),
            netlists=list(meta["netlists"]), deck=arrays["deck"], analysis=_unpack_strs(meta["analysis"]),
            wall_s=arrays["wall_s"], retries=arrays["retries"], extra=_unpack_strs(meta["extra"]),
            alters=_unpack_strs(meta["alters"]), alter_targets=list(meta["alter_targets"]),
            alter_values=arrays["alter_values"].reshape(len(meta["ids"]), len(meta["alter_targets"])),
            altered=arrays["altered"].astype(bool), params=groups["params"], measure=groups["measure"],
            vectors=vectors, scale=list(_unpack_strs(meta["scale"])), scale_units=_unpack_strs(meta["scale_units"]),
            scales=VectorColumn(arrays["s"], arrays["sn"]) if meta["has_scales"] else None)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    sizes = np.maximum(lengths, 0)
    return np.asarray(np.cumsum(sizes) - sizes)


def _named_value(col: NamedColumn, k: int) -> Any:
    value = col.values[k]
    return float(value) if isinstance(value, (float, np.floating)) else value


def _vector_column(arrays: list[np.ndarray | None], unit: str) -> VectorColumn | None:
    """Runs' arrays (None: absent) as one column; None when no run has one."""
    present = [a for a in arrays if a is not None]
    if not present:
        return None
    lengths = np.array([-1 if a is None else a.size for a in arrays], dtype=np.int64)
    zero_d = np.array([a is not None and a.ndim == 0 for a in arrays], dtype=bool)
    data = np.concatenate([a.reshape(-1) for a in present])
    return VectorColumn(data, lengths, unit, zero_d if zero_d.any() else None)


def _record_vectors(records: list[RunRecord]) -> dict[str, VectorColumn]:
    """The non-scale vectors of records as columns, in order of first appearance."""
    names: dict[str, None] = {}
    for rec in records:
        for key in rec.vectors:
            if key != rec.scale:
                names.setdefault(key, None)
    out = {}
    for key in names:
        arrays = [rec.vectors.get(key) if key != rec.scale else None for rec in records]
        unit = next((r.units.get(key, "") for r in records if key in r.vectors), "")
        col = _vector_column(arrays, unit)
        if col is not None:
            out[key] = col
    return out


def _named_columns(records: list[RunRecord], attr: str, units_attr: str) -> dict[str, NamedColumn]:
    """One column per parameter / measurement name (in order of first appearance); unit: the first non-empty one
    any record gives the name."""
    names: dict[str, None] = {}
    for rec in records:
        for key in getattr(rec, attr):
            names.setdefault(key, None)
    out = {}
    for key in names:
        values = [getattr(rec, attr).get(key) for rec in records]
        present = np.array([key in getattr(rec, attr) for rec in records], dtype=bool)
        if any(isinstance(v, str) for v in values):
            column = np.array(values + [None], dtype=object)[:-1]  # (a trailing None keeps it 1-D of objects)
        else:
            column = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        unit = next((getattr(r, units_attr).get(key) for r in records if getattr(r, units_attr).get(key)), "")
        out[key] = NamedColumn(column, present, unit)
    return out


def _alter_matrix(pairs: list[list[tuple[str, float]]]) -> tuple[list[str], np.ndarray]:
    """Per run ``(target, value)`` alter pairs -> the targets in first-seen order and a (runs, targets) float64
    matrix of the values (NaN where a run does not alter that target)."""
    targets: dict[str, int] = {}
    for row in pairs:
        for target, _ in row:
            targets.setdefault(target, len(targets))
    values = np.full((len(pairs), len(targets)), np.nan)
    for k, row in enumerate(pairs):
        for target, value in row:
            values[k, targets[target]] = value
    return list(targets), values


def _union_keys(groups: list[dict[str, Any]]) -> list[str]:
    """The keys of ``groups`` in first-seen order."""
    return list(dict.fromkeys(key for g in groups for key in g))


def _concat_named(groups: list[dict[str, NamedColumn]], sizes: list[int]) -> dict[str, NamedColumn]:
    out = {}
    for key in _union_keys(groups):
        cols = [g.get(key) for g in groups]
        text = any(c is not None and c.values.dtype.kind == "O" for c in cols)
        parts, present = [], []
        for c, size in zip(cols, sizes):
            if c is None:
                parts.append(np.full(size, None, dtype=object) if text else np.full(size, np.nan))
                present.append(np.zeros(size, dtype=bool))
            else:
                parts.append(c.values.astype(object) if text else c.values)
                present.append(c.present)
        unit = next((c.unit for c in cols if c is not None and c.unit), "")
        out[key] = NamedColumn(np.concatenate(parts), np.concatenate(present), unit)
    return out


def _concat_vectors(groups: list[dict[str, VectorColumn]], sizes: list[int]) -> dict[str, VectorColumn]:
    out = {}
    for key in _union_keys(groups):
        cols = [g.get(key) for g in groups]
        present = [c for c in cols if c is not None]
        complex_ = any(c.data.dtype.kind == "c" for c in present)
        data = np.concatenate([c.data.astype(np.complex128 if complex_ else c.data.dtype, copy=False)
                               for c in present])
        lengths = np.concatenate([c.lengths if c is not None else np.full(size, -1, dtype=np.int64)
                                  for c, size in zip(cols, sizes)])
        zero_d = None
        if any(c.zero_d is not None for c in present):
            zero_d = np.concatenate([c.zero_d if c is not None and c.zero_d is not None else np.zeros(size, bool)
                                     for c, size in zip(cols, sizes)])
        unit = next((c.unit for c in cols if c is not None and (c.lengths >= 0).any()), present[0].unit)
        out[key] = VectorColumn(data, lengths, unit, zero_d)
    return out


def _select_vector(col: VectorColumn, rows: np.ndarray) -> VectorColumn:
    offsets = _offsets(col.lengths)
    lengths = col.lengths[rows]
    parts = [col.data[o:o + n] for o, n in zip(offsets[rows].tolist(), lengths.tolist()) if n >= 0]
    data = np.concatenate(parts) if parts else col.data[:0]
    return VectorColumn(data, lengths, col.unit, None if col.zero_d is None else col.zero_d[rows])


class _Layout2:
    """In-memory index of a layout-2 file (id -> row, netlist -> deck, axis hash -> axis) and the batch writer."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.n = 0
        self.decks: dict[str, int] = {}
        self.axes: dict[tuple[str, bytes], int] = {}
        self.targets: dict[str, int] = {}
        self.chunk = _CHUNK  # rows per chunk of the per-run columns (the file's, once created or loaded)
        self._handles: dict[str, h5py.Dataset] = {}  # datasets of the file being written, by path
        self._handles_of: Any = None

    def create(self, f: h5py.File, chunk: int = _CHUNK) -> None:
        """The empty layout in ``f``; ``chunk``: rows per chunk of the per-run columns (see :func:`chunk_rows`)."""
        self.chunk = chunk
        f.attrs["layout"] = json.dumps(_LAYOUT_DOC, sort_keys=True)
        table = f.create_group("table")
        table.attrs["rows"] = np.int64(0)
        for name, (kind, _) in _COLUMNS.items():
            _new_column(table, name, kind, 0, None, chunk)
        table.create_group("params")
        table.create_group("measure")
        decks = f.create_group("decks")
        _new_column(decks, "netlist", "str", 0, None, _INDEX_CHUNK)
        _new_column(decks, "process", "str", 0, None, _INDEX_CHUNK)
        axes = f.create_group("axes")
        for name, kind in (("name", "str"), ("unit", "str"), ("offset", "i8"), ("length", "i8")):
            _new_column(axes, name, kind, 0, None, _INDEX_CHUNK)
        axes.create_dataset("hash", shape=(0, 2), maxshape=(None, 2), dtype=np.uint64, chunks=(_INDEX_CHUNK, 2))
        axes.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(self.data_chunk,))
        f.create_group("vectors")
        _new_column(f.create_group("alters"), "target", "str", 0, None, _INDEX_CHUNK)

    @property
    def data_chunk(self) -> int:
        """Values per chunk of the concatenated vector data (two column chunks' worth, at least 1024)."""
        return max(1024, 2 * self.chunk)

    def load(self, f: h5py.File) -> dict[str, str]:
        """Index an existing file; returns id -> status."""
        table = f["table"]
        self.n = int(table.attrs["rows"])
        self.chunk = int(table["id"].chunks[0])
        ids = table["id"].asstr()[: self.n]
        statuses = table["status"].asstr()[: self.n]
        self.rows = {rid: k for k, rid in enumerate(ids)}
        netlists = f["decks/netlist"].asstr()[:]
        self.decks = {text: k for k, text in enumerate(netlists)}
        names = f["axes/name"].asstr()[:]
        hashes = f["axes/hash"][:]
        self.axes = {(n, h.tobytes()): k for k, (n, h) in enumerate(zip(names, hashes))}
        self.targets = {t: k for k, t in enumerate(f["alters/target"].asstr()[:])} if "alters" in f else {}
        return dict(zip(ids, statuses))

    def write(self, f: h5py.File, batches: list[RecordBatch], compression: str | None) -> None:
        """Append (or, for ids already stored, overwrite) the runs of ``batches`` (a later run of an id replaces an
        earlier one): their table rows, each new deck and axis once, the parameter and measurement columns and the
        ragged vectors, one write per column; ``table.attrs["rows"]`` last."""
        batch = RecordBatch.concat(batches).latest() if batches else None
        if batch is None or not len(batch):
            return
        if self._handles_of is not f.id:  # a streamed copy is written many times: its datasets stay open
            self._handles, self._handles_of = {}, f.id
        rows, contiguous = self._assign_rows(batch.ids)
        deck_of = self._write_decks(f["decks"], batch)
        axis_of = self._write_axes(f["axes"], batch)
        table = f["table"]
        self._write_base(table, batch, rows, contiguous, deck_of, axis_of)
        self._write_alters(f, table, rows, batch, self.n, contiguous, compression)
        self._write_named_columns(table["params"], batch.params, rows, contiguous, compression)
        self._write_named_columns(table["measure"], batch.measure, rows, contiguous, compression)
        self._write_vectors(f["vectors"], batch.vectors, rows, contiguous, compression)
        table.attrs["rows"] = np.int64(self.n)

    def _ds(self, group: h5py.Group, name: str) -> h5py.Dataset:
        key = f"{group.name}/{name}"
        ds = self._handles.get(key)
        if ds is None:
            ds = self._handles[key] = _open(group, name)
        return ds

    def _assign_rows(self, ids: list[str]) -> tuple[np.ndarray, bool]:
        """The table row of each id (a new id gets the next row) and whether they are one contiguous block."""
        n0 = self.n
        known = self.rows
        rows = np.empty(len(ids), dtype=np.int64)
        for k, rid in enumerate(ids):
            row = known.get(rid)
            if row is None:
                row = known[rid] = self.n
                self.n += 1
            rows[k] = row
        return rows, bool(rows[0] == n0 and self.n == n0 + len(ids))

    def _write_decks(self, decks: h5py.Group, batch: RecordBatch) -> np.ndarray:
        """Each distinct netlist once (with the process of its first run); returns every run's deck index."""
        used, first = np.unique(batch.deck, return_index=True)
        order = np.argsort(first, kind="stable")  # the batch's decks in order of first use
        remap = np.empty(len(batch.netlists), dtype=np.int64)
        new: list[tuple[str, str]] = []
        for local, k in zip(used[order].tolist(), first[order].tolist()):
            text = batch.netlists[local]
            d = self.decks.get(text)
            if d is None:
                d = self.decks[text] = len(self.decks)
                new.append((text, batch.process[k]))
            remap[local] = d
        if new:
            d0 = decks["netlist"].shape[0]
            for j, name in enumerate(("netlist", "process")):
                ds = self._ds(decks, name)
                _extent(ds, (d0 + len(new),))
                _write_block(ds, d0, _text_column([entry[j] for entry in new]))
        return np.asarray(remap[batch.deck])

    def _write_axes(self, axes: h5py.Group, batch: RecordBatch) -> np.ndarray:
        """Each distinct scale vector (time, frequency, sweep axis) once; returns every run's axis (-1: none)."""
        axis_of = np.full(len(batch), -1, dtype=np.int64)
        if batch.scales is None:
            return axis_of
        new_axes: list[tuple[str, str, np.ndarray, bytes]] = []
        offsets = _offsets(batch.scales.lengths)
        data = batch.scales.data
        for k, name in enumerate(batch.scale):
            n = int(batch.scales.lengths[k])
            if name is None or n < 0:
                continue
            arr = data[int(offsets[k]):int(offsets[k]) + n]
            akey = _axis_key(name, arr)
            a = self.axes.get(akey)
            if a is None:
                a = self.axes[akey] = len(self.axes)
                new_axes.append((name, batch.scale_units[k], arr, akey[1]))
            axis_of[k] = a
        if new_axes:
            a0 = axes["name"].shape[0]
            e0 = axes["data"].shape[0]
            lengths = np.array([len(a[2]) for a in new_axes], dtype=np.int64)
            starts = e0 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
            for name in ("name", "unit", "offset", "length", "hash"):
                axes[name].resize(a0 + len(new_axes), axis=0)
            axes["name"][a0:] = np.array([a[0] for a in new_axes], dtype=object)
            axes["unit"][a0:] = np.array([a[1] for a in new_axes], dtype=object)
            axes["offset"][a0:] = starts
            axes["length"][a0:] = lengths
            axes["hash"][a0:] = np.frombuffer(b"".join(a[3] for a in new_axes), dtype=np.uint64).reshape(-1, 2)
            axes["data"].resize((e0 + int(lengths.sum()),))
            axes["data"][e0:] = np.concatenate([a[2] for a in new_axes])
        return axis_of

    def _write_base(self, table: h5py.Group, batch: RecordBatch, rows: np.ndarray, contiguous: bool,
                    deck_of: np.ndarray, axis_of: np.ndarray) -> None:
        """The fixed columns (``_COLUMNS``: id, point, chip, seed, status, error, ...)."""
        columns: dict[str, Any] = {
            "id": batch.ids, "point": np.where(batch.point >= 0, batch.point, deck_of), "chip": batch.chip,
            "seed": batch.seed, "status": batch.status, "error": batch.error, "analysis": batch.analysis,
            "process": batch.process, "wall_s": batch.wall_s, "retries": batch.retries, "deck": deck_of,
            "axis": axis_of, "alters": batch.alters, "extra": batch.extra}
        for name, (kind, _) in _COLUMNS.items():
            ds = self._ds(table, name)
            _extent(ds, (self.n,))
            values = columns[name]
            if kind == "str" and contiguous and not any(values):
                continue  # new rows of a text column read as "" unwritten (each written string is a heap object)
            _write_at(ds, rows, _text_column(values) if kind == "str" else np.asarray(values, dtype=kind), contiguous)

    def _write_alters(self, f: h5py.File, table: h5py.Group, rows: np.ndarray, batch: RecordBatch, n: int,
                      contiguous: bool, compression: str | None) -> None:
        """The chips' numeric alter deltas: ``/alters/target`` (``"alter xm1 delvto"``) and one row of
        ``/table/alter_values`` (N x targets, NaN: not altered) per run."""
        new = [t for t in batch.alter_targets if t not in self.targets]
        for target in new:
            self.targets[target] = len(self.targets)
        k = len(self.targets)
        if new:
            if "alters" not in f:
                _new_column(f.create_group("alters"), "target", "str", 0, None, _INDEX_CHUNK)
            tcol = f["alters/target"]
            t0 = tcol.shape[0]
            tcol.resize((t0 + len(new),))
            tcol[t0:] = np.array(new, dtype=object)
        if "alter_values" not in table:
            if not k:
                return
            table.create_dataset("alter_values", shape=(n, k), maxshape=(None, None), dtype=np.float64,
                                 chunks=(self.chunk, k), fillvalue=np.nan, compression=compression)
        ds = self._ds(table, "alter_values")
        _extent(ds, (n, max(k, ds.shape[1])))
        if not batch.altered.any():
            return
        block = np.full((len(rows), ds.shape[1]), np.nan)
        if batch.alter_targets:
            block[:, [self.targets[t] for t in batch.alter_targets]] = batch.alter_values
        _write_at(ds, rows, block, contiguous)

    def _write_named_columns(self, group: h5py.Group, columns: dict[str, NamedColumn], rows: np.ndarray,
                             contiguous: bool, compression: str | None) -> None:
        """One column per parameter or measurement name (float, or text once any value is text), unit in its
        attrs; columns this batch did not mention are only resized (fill values)."""
        n = self.n
        columns_done = set()
        for key, col in columns.items():
            columns_done.add(dataset_name(key))
            text = col.values.dtype.kind == "O" and any(isinstance(v, str) for v in col.values.tolist())
            kind = "str" if text else "f8"
            dname = dataset_name(key)
            if dname not in group:
                ds = _new_column(group, dname, kind, n, compression if kind != "str" else None, self.chunk)
                _put_attr(ds.id, "name", key)
                _put_attr(ds.id, "unit", col.unit)
            else:
                ds = self._ds(group, dname)
                if kind == "str" and ds.dtype.kind != "O":
                    ds = _promote_to_text(group, dname, n)
                    self._handles[f"{group.name}/{dname}"] = ds
                kind = "str" if ds.dtype.kind == "O" else "f8"
                _extent(ds, (n,))
            if kind == "f8":
                values = col.values if col.values.dtype.kind == "f" else np.array(
                    [np.nan if v is None else float(v) for v in col.values.tolist()], dtype=np.float64)
                values = np.where(col.present, values, np.nan) if not col.present.all() else values
            else:
                values = np.array(["" if not p or v is None else str(v)
                                   for v, p in zip(col.values.tolist(), col.present.tolist())], dtype=object)
            _write_at(ds, rows, values, contiguous)
        for dname in group:
            if dname not in columns_done:
                ds = self._ds(group, dname)
                if ds.shape[0] != n:
                    _extent(ds, (n,))

    def _write_vectors(self, vgroup: h5py.Group, columns: dict[str, VectorColumn], rows: np.ndarray,
                       contiguous: bool, compression: str | None) -> None:
        """Ragged vectors: per vector name one group of concatenated values plus offset / length columns
        (-1: the run has no such vector); complex once any run's values are."""
        n = self.n
        done = set()
        for key, col in columns.items():
            dname = dataset_name(key)
            done.add(dname)
            complex_ = col.data.dtype.kind == "c"
            if dname not in vgroup:
                g = vgroup.create_group(dname)
                _put_attr(g.id, "name", key)
                _put_attr(g.id, "unit", col.unit)
                g.attrs["scalar"] = col.scalar
                g.create_dataset("data", shape=(0,), maxshape=(None,), chunks=(self.data_chunk,),
                                 dtype=np.complex128 if complex_ else np.float64, compression=compression)
                for name in ("offset", "length"):
                    _new_column(g, name, "i8", n, compression, self.chunk)
            else:
                g = vgroup[dname]
                if not col.scalar:
                    g.attrs["scalar"] = False
                if complex_ and g["data"].dtype.kind != "c":
                    old = g["data"][:]
                    del g["data"]
                    self._handles.pop(f"{g.name}/data", None)
                    g.create_dataset("data", data=old.astype(np.complex128), maxshape=(None,), chunks=(self.data_chunk,),
                                     compression=compression)
            data = self._ds(g, "data")
            e0 = data.shape[0]
            lengths = col.lengths
            offsets = e0 + _offsets(lengths)
            offsets[lengths < 0] = -1
            if col.data.size:
                _extent(data, (e0 + col.data.size,))
                _write_block(data, e0, col.data.astype(data.dtype, copy=False))
            for name, column in (("offset", offsets), ("length", lengths)):
                ds = self._ds(g, name)
                _extent(ds, (n,))
                _write_at(ds, rows, column, contiguous)
        for dname in vgroup:
            if dname in done:
                continue
            for name in ("offset", "length"):
                ds = self._ds(vgroup, f"{dname}/{name}")
                if ds.shape[0] != n:
                    _extent(ds, (n,))


def _text(ds: h5py.Dataset, n: int | None = None) -> np.ndarray:
    return np.asarray(ds.asstr()[: ds.shape[0] if n is None else n])


class _V2Reader:
    """Columns of a layout-2 file, read once (vectors on demand)."""

    def __init__(self, f: h5py.File) -> None:
        self.f = f
        table = f["table"]
        self.n = n = int(table.attrs["rows"])
        self.columns: dict[str, np.ndarray] = {}
        for name, (kind, _) in _COLUMNS.items():
            self.columns[name] = _text(table[name], n) if kind == "str" else table[name][:n]
        self.params = {table["params"][d].attrs.get("name", vector_name(d)): table["params"][d]
                       for d in table["params"]}
        self.measure = {table["measure"][d].attrs.get("name", vector_name(d)): table["measure"][d]
                        for d in table["measure"]}
        self.param_values = {k: (_text(ds, n) if ds.dtype.kind == "O" else ds[:n]) for k, ds in self.params.items()}
        self.measure_values = {k: ds[:n] for k, ds in self.measure.items()}
        self.vectors = {f["vectors"][d].attrs.get("name", vector_name(d)): f["vectors"][d] for d in f["vectors"]}
        self._cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._axes: tuple[Any, ...] | None = None
        self._decks: np.ndarray | None = None
        self._alters: tuple[np.ndarray, np.ndarray] | None = None

    def vector_arrays(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if name not in self._cache:
            g = self.vectors[name]
            self._cache[name] = (g["data"][:], g["offset"][: self.n], g["length"][: self.n])
        return self._cache[name]

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if self._axes is None:
            a = self.f["axes"]
            self._axes = (_text(a["name"]), _text(a["unit"]), a["offset"][:], a["length"][:], a["data"][:])
        return self._axes

    def decks(self) -> np.ndarray:
        if self._decks is None:
            self._decks = _text(self.f["decks/netlist"])
        return self._decks

    def record(self, row: int, load_vectors: bool = True) -> RunRecord:
        c = self.columns
        vectors: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        scale = None
        if load_vectors:
            axis = int(c["axis"][row])
            if axis >= 0:
                names, aunits, offsets, lengths, data = self.axes()
                scale = str(names[axis])
                vectors[scale] = data[offsets[axis]: offsets[axis] + lengths[axis]].copy()
                units[scale] = str(aunits[axis])
            for name, g in self.vectors.items():
                data, offsets, lengths = self.vector_arrays(name)
                length = int(lengths[row])
                if length < 0:
                    continue
                arr = data[offsets[row]: offsets[row] + length].copy()
                vectors[name] = arr.reshape(()) if g.attrs.get("scalar", False) and length == 1 else arr
                units[name] = str(g.attrs.get("unit", ""))
        extra = json.loads(c["extra"][row]) if c["extra"][row] else {}
        attrs = {"analysis": str(c["analysis"][row]),
                 "wall_s": None if np.isnan(c["wall_s"][row]) else float(c["wall_s"][row]),
                 "retries": extra.pop("retries", []), **extra}
        params: dict[str, float | int | str | None] = {}
        for k, values in self.param_values.items():
            v = values[row]
            if isinstance(v, str):
                if v != "":
                    params[k] = v
            elif not np.isnan(v):
                params[k] = float(v)
        status = str(c["status"][row])
        measurements = {k: float(v[row]) for k, v in self.measure_values.items()} if status != "failed" else {}
        return RunRecord(
            id=str(c["id"][row]), params=params, seed=int(c["seed"][row]), chip=int(c["chip"][row]),
            process=str(c["process"][row]), status=status, error=str(c["error"][row]) if status != "ok" else None,
            netlist=str(self.decks()[int(c["deck"][row])]), vectors=vectors, units=units,
            measurements=measurements, attrs=attrs, point=int(c["point"][row]),
            param_units={k: str(ds.attrs.get("unit", "")) for k, ds in self.params.items()},
            measurement_units={k: str(ds.attrs.get("unit", "")) for k, ds in self.measure.items()},
            alters=self.alters(row), scale=scale)

    def alters(self, row: int) -> tuple[str, ...]:
        """The run's alter commands: the numeric deltas (as ``<target> = <value>``) then any text ones."""
        if self._alters is None:
            table = self.f["table"]
            targets = _text(self.f["alters/target"]) if "alters" in self.f else np.array([], dtype=object)
            values = table["alter_values"][: self.n] if "alter_values" in table else np.zeros((self.n, 0))
            self._alters = (targets, values)
        targets, values = self._alters
        out = [f"{targets[k]} = {float(values[row, k])!r}" for k in range(values.shape[1])
               if not np.isnan(values[row, k])]
        text = self.columns["alters"][row]
        return tuple(out + (text.split("\n") if text else []))


def store_layout(f: h5py.File) -> int:
    """The layout number of an open store: 2 (columnar, ``/table``) or 1 (one group ``/runs/<id>`` per run)."""
    if "store_layout" in f.attrs:
        return int(f.attrs["store_layout"])
    return 2 if "table" in f else 1


def _check_store_options(commit_interval_s: float, max_commit_fraction: float, max_pending_bytes: int,
                         journal_fsync_s: float, compression: str | None, compress_min_len: int) -> None:
    """ValueError naming the first out-of-range ``RunStore`` option: the commit interval and journal fsync period
    (s), the commit-time fraction, the pending-bytes cap, the compression filter and its minimum length."""
    if not commit_interval_s >= 0 or not math.isfinite(commit_interval_s):
        raise ValueError(f"commit_interval_s must be a finite number >= 0, got {commit_interval_s!r}")
    if not 0 < max_commit_fraction <= 1:
        raise ValueError(f"max_commit_fraction must be in (0, 1], got {max_commit_fraction!r}")
    if max_pending_bytes <= 0:
        raise ValueError(f"max_pending_bytes must be > 0, got {max_pending_bytes!r}")
    if not journal_fsync_s >= 0:
        raise ValueError(f"journal_fsync_s must be >= 0, got {journal_fsync_s!r}")
    if compression not in (None, "gzip", "lzf"):
        raise ValueError(f"compression must be None, 'gzip' or 'lzf', got {compression!r}")
    if compress_min_len < 1:
        raise ValueError(f"compress_min_len must be >= 1, got {compress_min_len!r}")


def _config_text(config: dict[str, Any] | None) -> str | None:
    """The canonical JSON text of a store's config (None without one); ValueError if it is not JSON-able."""
    if config is None:
        return None
    try:
        return _canonical_json(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-able ({exc})") from None


class RunStore:
    """Writer of an HDF5 run store (see the module docstring for the layout and the durability argument).

    ``RunStore(path, config)`` creates a new file and refuses (``StoreExistsError``) if ``path`` or its journal
    already exists; ``resume=True`` opens an existing store (or creates a missing one), deletes a stale
    ``<file>.tmp``, replays the journal and checks that ``config`` (if given) equals the stored one
    (``StoreError`` otherwise: point ids of a different grid would mean different points).

    ``append`` is durable against SIGKILL when it returns; records reach the HDF5 file in batches (``commit``,
    automatic every ``max(commit_interval_s, o_prev*(1-f)/f)`` seconds, and on ``close``). Not thread-safe: one
    writer process, one thread.

    ``expected_rows``: how many runs a new store will hold (a sweep knows); it sizes the HDF5 chunks of the per-run
    columns (:func:`chunk_rows`) and changes nothing else.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: dict[str, Any] | None = None,
        *,
        resume: bool = False,
        commit_interval_s: float = 2.0,
        max_commit_fraction: float = 0.1,
        max_pending_bytes: int = 256 << 20,
        journal_fsync_s: float = 0.5,
        compression: str | None = None,
        compress_min_len: int = 4096,
        expected_rows: int | None = None,
    ) -> None:
        _check_store_options(commit_interval_s, max_commit_fraction, max_pending_bytes, journal_fsync_s,
                             compression, compress_min_len)
        if expected_rows is not None and (isinstance(expected_rows, bool) or not isinstance(expected_rows, int)
                                          or expected_rows < 0):
            raise ValueError(f"expected_rows must be a non-negative int or None, got {expected_rows!r}")
        config_text = _config_text(config)
        self.expected_rows = expected_rows

        self.path = Path(path)
        self.journal = journal_path(self.path)
        self.commit_interval_s = float(commit_interval_s)
        self.max_commit_fraction = float(max_commit_fraction)
        self.max_pending_bytes = int(max_pending_bytes)
        self.journal_fsync_s = float(journal_fsync_s)
        self.compression = compression
        self.compress_min_len = int(compress_min_len)
        self._init_state()

        exists = self._check_openable(resume)
        self._layout = STORE_LAYOUT
        self._v2 = _Layout2()
        self._journal_netlist: str | None = None  # the netlist of the last journal record (None after truncation)
        locked = False
        new_journal = False
        try:
            new_journal = self._lock_journal()
            locked = True
            tmp = _tmp_path(self.path)
            if tmp.exists():
                tmp.unlink()  # a commit killed before its os.replace; the live file is intact
            if exists:
                self._open_existing(config_text)
            else:
                self._create(config_text)
            self._replay_journal()
        except BaseException:
            # only the holder of the lock may remove the journal: a loser of the race would delete the winner's
            if locked and new_journal and self.journal.exists() and self.journal.stat().st_size == 0:
                self.journal.unlink()  # leave no trace of a store that could not be opened
            self._abandon()
            raise

    def _init_state(self) -> None:
        """Empty writer state: no pending records (bytes, root attributes, statuses), no journal descriptor, commit
        and fsync clocks (``time.monotonic()`` s) started now, zeroed ``stats``."""
        self._pending: dict[str, RunRecord] = {}  # layout 1: records by id
        self._batches: list[RecordBatch] = []  # layout 2: columns, in order (a later run of an id replaces it)
        self._copy: h5py.File | None = None  # the next commit's copy, open while batches are streamed into it
        self._written = 0  # how many of _batches are in it
        self._copy_overhead = 0.0  # seconds its copying and opening took (part of the commit's overhead)
        self._pending_bytes = 0
        self._pending_root: dict[str, Any] = {}
        self._status: dict[str, str] = {}
        self._fd: int | None = None
        self._last_overhead = 0.0
        self._last_commit_end = time.monotonic()
        self._last_fsync = time.monotonic()
        #: counters for benchmarks/tests: commits done, seconds spent in commits, records committed
        self.stats = {"commits": 0, "commit_s": 0.0, "overhead_s": 0.0, "committed": 0, "replayed": 0}

    @staticmethod
    def check_new(path: str | os.PathLike[str]) -> None:
        """Raise what ``RunStore(path)`` (no resume) would raise because of files already there or a missing
        folder (``StoreExistsError``, ``StoreError``), without making anything: a caller can then open the store
        in the background."""
        store = RunStore.__new__(RunStore)
        store.path = Path(path)
        store.journal = journal_path(store.path)
        store._check_openable(False)

    def _check_openable(self, resume: bool) -> bool:
        """Whether the store file exists; StoreExistsError if it (or a journal with data) exists without
        ``resume``, StoreError if its folder is missing."""
        exists = self.path.exists()
        # an empty journal without a file is what a kill during the creation of a new store leaves: not a store
        journal_has_data = self.journal.exists() and self.journal.stat().st_size > 0
        if not resume and (exists or journal_has_data):
            which = self.path if exists else self.journal
            raise StoreExistsError(f"run store {which} already exists; pass resume=True (--resume) or remove it")
        if not self.path.parent.is_dir():
            raise StoreError(f"run store directory {self.path.parent} does not exist")
        return exists

    def _lock_journal(self) -> bool:
        """Open (or create) the journal and take its exclusive ``flock`` into ``self._fd``; returns whether this
        call created the journal file. StoreError if another writer holds it or it keeps being replaced."""
        new_journal = False
        for _ in range(100):
            new_journal = not self.journal.exists()
            self._fd = os.open(self.journal, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"run store {self.path} is in use by another writer (journal locked)") from None
            # the winner of a race may have closed (and unlinked) the journal between our open and flock: the
            # lock is only ours if the path still names the inode we locked
            try:
                same = os.path.samestat(os.fstat(self._fd), os.stat(self.journal))
            except FileNotFoundError:
                same = False
            if same:
                return new_journal
            os.close(self._fd)
            self._fd = None
        raise StoreError(f"run store {self.path}: could not lock its journal (it keeps being replaced)")

    def _replay_journal(self) -> None:
        """Move the locked journal's records into the pending batch (runs, in order, the last record of an id
        winning; root attributes merged), count them in ``stats["replayed"]`` and commit if the journal held
        anything."""
        assert self._fd is not None  # called with the journal locked
        replay = _read_journal(self._fd, self.journal)
        last_netlist = ""
        records: list[RunRecord] = []  # consecutive "run" records (written by spicenet before batches)
        replayed = 0
        for kind, meta, arrays in replay:
            if kind == "run":
                rec = _record_from_journal(meta, arrays, last_netlist)
                last_netlist = rec.netlist
                records.append(rec)
                continue
            self._pend_records(records)
            records = []
            if kind == "batch":
                batch = RecordBatch.decode(meta, arrays)
                replayed += len(batch)
                self._pend_batch(batch)
            elif kind == "root":
                self._pending_root.update(meta)
        self._pend_records(records)
        self.stats["replayed"] = replayed + sum(1 for kind, _, _ in replay if kind == "run")
        if replay or os.fstat(self._fd).st_size:
            self.commit()

    # ------------------------------------------------------------------------------------------ open/create

    def _create(self, config_text: str | None) -> None:
        tmp = _tmp_path(self.path)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["spicenet_version"] = __version__
                f.attrs["ngspice_version"] = ""
                f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
                f.attrs["config"] = config_text if config_text is not None else "{}"
                f.attrs["store_layout"] = STORE_LAYOUT
                self._v2.create(f, chunk_rows(self.expected_rows))
            self._publish(tmp)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _open_existing(self, config_text: str | None) -> None:
        try:
            with h5py.File(self.path, "r") as f:
                self._layout = store_layout(f)
                if self._layout == 1:
                    if "runs" not in f:
                        raise StoreInputError(f"{self.path} is not a spicenet run store (no /runs group)")
                    runs = f["runs"]
                    for rid in runs:
                        self._status[rid] = str(_get_attr(runs[rid].id, "status", "failed"))
                elif self._layout == 2 and "table" in f:
                    self._status = self._v2.load(f)
                else:
                    raise StoreInputError(f"{self.path} is not a spicenet run store (layout {self._layout}, no /table)")
                stored = f.attrs.get("config")
        except OSError as exc:
            kind = StoreError if "lock" in str(exc).lower() else StoreInputError  # in use vs not an HDF5 file
            raise kind(f"cannot open run store {self.path}: {exc}") from None
        if config_text is not None and stored is not None:
            stored_text = _canonical_json(json.loads(stored))
            if stored_text != config_text and stored_text != "{}":
                raise StoreConfigError(
                    f"resume of {self.path}: the config differs from the one stored in the file "
                    f"(a different sweep); use a new output file"
                )
            if stored_text == "{}":
                self._pending_root["config"] = config_text

    def _publish(self, tmp: Path) -> None:
        """fsync ``tmp``, atomically rename it over the live file, fsync the directory."""
        _fsync_path(tmp)
        os.replace(tmp, self.path)
        _fsync_path(self.path.parent, directory=True)

    # ------------------------------------------------------------------------------------------------ API

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        # an error is already propagating (e.g. ENOSPC from an append): commit what can be committed, but never
        # raise a second error on top of it; what is not committed stays in the journal for --resume
        try:
            self.close()
        except (OSError, StoreError):
            self._abandon()

    def _check_open(self) -> int:
        if self._fd is None:
            raise StoreError(f"run store {self.path} is closed")
        return self._fd

    def _journal_write(self, blob: bytes) -> None:
        fd = self._check_open()
        start = os.fstat(fd).st_size
        view = memoryview(blob)
        try:
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as exc:
            # a full disk (ENOSPC) or quota: cut the torn record off again so that the journal stays a sequence of
            # intact records (a torn one in the middle would hide every later record from replay)
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise StoreError(f"run store {self.path}: cannot write its journal ({exc.strerror or exc}); the records "
                             f"appended before are kept (resume with --resume)") from None
        now = time.monotonic()
        if now - self._last_fsync >= self.journal_fsync_s:
            os.fsync(fd)
            self._last_fsync = now
    
    def set_root_attrs(self, **attrs: Any) -> None:
        """Sets root attrs (e.g. ``ngspice_version``); journaled now, written to the file at the next commit.

        Values must be str, int, float or bool (a dict/list is stored as JSON text).
        """
        self._check_open()
        clean: dict[str, Any] = {}
        for key, value in attrs.items():
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value, sort_keys=True)
            value = _json_scalar(value, f"root attr {key!r}")
            if value is None:
                raise ValueError(f"root attr {key!r} must not be None")
            clean[key] = value
        self._journal_write(_encode("root", clean, {}))
        self._pending_root.update(clean)

    def done_ids(self) -> set[str]:
        """Ids whose latest record was simulated (status ``"ok"`` or ``"measure_failed"``: a measurement of stored
        vectors fails the same way again), committed or journaled; ``"failed"`` ids are retried on resume."""
        return {rid for rid, status in self._status.items() if status != "failed"}

    def statuses(self) -> dict[str, str]:
        """Id -> status (``"ok"``/``"failed"``) of every record appended so far, committed or not."""
        return dict(self._status)

    def append(self, record: RunRecord) -> None:
        """Validates ``record``, journals it (SIGKILL-safe on return) and commits the batch when one is due.

        A record with an id already stored replaces it (last write wins).
        """
        self.append_many([record])

    def append_many(self, records: list[RunRecord]) -> None:
        """``append`` for a batch: all validated first, journaled with one write (SIGKILL-safe on return)."""
        self._check_open()
        recs = [_validate(record) for record in records]
        if not recs:
            return
        if self._layout == 2:
            self._append(RecordBatch.from_records(recs))
            return
        blobs = []
        last = self._journal_netlist
        for rec in recs:
            try:
                blobs.append(_record_to_journal(rec, netlist_known=rec.netlist == last))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"record {rec.id}: attrs must be JSON-able ({exc})") from None
            last = rec.netlist
        self._journal_netlist = last
        try:
            self._journal_write(b"".join(blobs))
        except StoreError:
            self._journal_netlist = None
            raise
        self._pend_records(recs)
        self._maybe_commit()

    def append_batch(self, batch: RecordBatch) -> None:
        """``append_many`` for records already in columns (what a sweep makes without per-run objects): checked as
        a whole (:func:`_validate_batch`), journaled as one record (SIGKILL-safe on return)."""
        self._check_open()
        _validate_batch(batch)
        if not len(batch):
            return
        if self._layout == 1:
            self.append_many(batch.to_records())
            return
        self._append(batch)

    def _append(self, batch: RecordBatch) -> None:
        self._journal_write(batch.encode())
        self._pend_batch(batch)
        if not self._commit_due():
            self._stream()
        self._maybe_commit()

    def _pend_records(self, records: list[RunRecord]) -> None:
        if not records:
            return
        if self._layout == 2:
            self._pend_batch(RecordBatch.from_records(records))
            return
        for rec in records:
            self._pending.pop(rec.id, None)
            self._pending[rec.id] = rec
            self._pending_bytes += sum(a.nbytes for a in rec.vectors.values()) + 256
            self._status[rec.id] = rec.status

    def _pend_batch(self, batch: RecordBatch) -> None:
        if self._layout == 1:
            self._pend_records(batch.to_records())
            return
        self._batches.append(batch)
        self._pending_bytes += batch.nbytes
        self._status.update(zip(batch.ids, batch.status))

    def _maybe_commit(self) -> None:
        if self._commit_due():
            try:
                self.commit()
            except StoreError:
                # the records are durable in the journal: this append succeeded. A commit that cannot be made now
                # (a full disk) is retried after the next interval; close() (or commit()) raises if it still fails
                self._last_commit_end = time.monotonic()

    def next_commit_interval(self) -> float:
        """Seconds between the end of the last commit and the next automatic one (see the cost bound)."""
        f = self.max_commit_fraction
        return max(self.commit_interval_s, self._last_overhead * (1.0 - f) / f)

    def _commit_due(self) -> bool:
        if self._pending_bytes >= self.max_pending_bytes:
            return True
        return time.monotonic() - self._last_commit_end >= self.next_commit_interval()

    def _space_check(self) -> None:
        """Refuse a commit that cannot fit (the copy of the file plus the batch, with margin) before h5py sees a full
        disk: h5py reports a failed flush as RuntimeError and prints "Exception ignored" tracebacks on teardown."""
        try:
            stat = os.statvfs(self.path.parent)
            free = stat.f_bavail * stat.f_frsize
            need = self.path.stat().st_size + 2 * self._pending_bytes + (4 << 20)  # + new chunks
        except OSError:
            free = need = 0
        if free < need:
            raise StoreError(f"run store {self.path}: commit refused, the disk is nearly full ({free >> 20} MiB free, "
                             f"~{need >> 20} MiB needed); the pending records stay in the journal (free space, then "
                             f"--resume)")

    def _stream(self) -> None:
        """Write pending batches into the next commit's copy of the file now, while the caller's simulations run, so
        that the commit itself has little left to do: once ``STREAM_ROWS`` runs wait, the copy is made and opened,
        and from then on every batch goes into it as it is appended. The live file stays untouched until the commit
        renames the copy over it; a failure here just drops the copy (the records are in the journal and the commit
        writes them)."""
        if self._layout != 2:
            return
        if self._copy is None:
            if sum(len(b) for b in self._batches) < STREAM_ROWS:
                return
            t0 = time.monotonic()
            tmp = _tmp_path(self.path)
            try:
                self._space_check()
                _copy_file(self.path, tmp)
                self._copy = h5py.File(tmp, "r+")
            except (OSError, RuntimeError, StoreError):
                self._drop_copy()
                return
            self._copy_overhead = time.monotonic() - t0
            self._written = 0
        try:
            self._v2.write(self._copy, self._batches[self._written:], self.compression)
        except (OSError, RuntimeError):
            self._drop_copy()
            return
        self._written = len(self._batches)

    def _drop_copy(self) -> None:
        """Close and remove the streamed copy (its rows are in the index: rebuild it from the live file)."""
        if self._copy is not None:
            try:
                self._copy.close()
            except (OSError, RuntimeError):
                pass
            self._copy = None
            self._reload_index()
        self._written = 0
        try:
            _tmp_path(self.path).unlink(missing_ok=True)
        except OSError:
            pass

    def _reload_index(self) -> None:
        if self._layout == 2:  # the in-memory index may hold rows of a failed batch: rebuild it
            self._v2 = _Layout2()
            try:
                with h5py.File(self.path, "r") as f:
                    self._v2.load(f)
            except OSError:
                pass

    def commit(self) -> None:
        """Writes the pending records into a copy of the file and atomically replaces the file with it.

        On a failure (a full disk) the copy is removed, the live file and the journal are untouched (every record
        stays recoverable) and a ``StoreError`` is raised once."""
        self._commit(final=False)

    def _commit(self, final: bool) -> None:
        """``commit``; ``final``: the journal is removed next (``close``), so it is not truncated and fsync-ed first
        (a journal left by a kill before its removal holds records already in the file: replay rewrites them)."""
        fd = self._check_open()
        if not self._pending and not self._batches and not self._pending_root:
            if os.fstat(fd).st_size:
                os.ftruncate(fd, 0)
                self._journal_netlist = None
            return
        t0 = time.monotonic()
        tmp = _tmp_path(self.path)
        write_s = 0.0
        overhead0 = 0.0
        try:
            if self._copy is not None:  # streamed: what is left of the batch, then close and rename
                f = self._copy
                overhead0 = self._copy_overhead
            else:
                self._space_check()
                _copy_file(self.path, tmp)
                f = self._copy = h5py.File(tmp, "r+")
                self._written = 0
            for key, value in self._pending_root.items():
                f.attrs[key] = value
            t_write = time.monotonic()
            if self._layout == 1:
                runs = f["runs"]
                for rec in self._pending.values():
                    _write_group(runs, rec, self.compression, self.compress_min_len)
            else:
                self._v2.write(f, self._batches[self._written:], self.compression)
            write_s = time.monotonic() - t_write
            self._copy = None
            f.close()
            self._publish(tmp)
        except BaseException as exc:
            self._drop_copy()
            self._reload_index()
            if isinstance(exc, StoreError):
                raise
            # a full disk shows as OSError from the copy and as RuntimeError from h5py's flush/close of the copy
            if isinstance(exc, (OSError, RuntimeError)):
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
                if "errno = 28" in str(exc):
                    why = "No space left on device"
                raise StoreError(f"run store {self.path}: commit failed ({why}); nothing half-written "
                                 f"is left, the pending records stay in the journal (resume with --resume)") from None
            raise
        # A kill here leaves the records both in the file and in the journal: replay rewrites them identically.
        if not final:
            os.ftruncate(fd, 0)
            os.fsync(fd)
        self._journal_netlist = None
        self._written = 0
        self.stats["commits"] += 1
        self.stats["committed"] += len(self._pending) + len({rid for b in self._batches for rid in b.ids})
        self._pending.clear()
        self._batches.clear()
        self._pending_bytes = 0
        self._pending_root.clear()
        end = time.monotonic()
        self._last_overhead = end - t0 - write_s + overhead0
        self.stats["commit_s"] += end - t0
        self.stats["overhead_s"] += end - t0 - write_s + overhead0
        self._last_commit_end = end

    def close(self) -> None:
        """Commits what is pending, removes the empty journal and releases the lock. Idempotent. When the commit
        fails the journal is kept (and the lock released): ``StoreError``, raised once."""
        if self._fd is None:
            return
        try:
            self._commit(final=True)
        except BaseException:
            self._abandon()
            raise
        os.unlink(self.journal)
        self._abandon()

    def _abandon(self) -> None:
        """Releases the journal without committing (what a kill does; used on errors and by tests)."""
        if self._copy is not None:  # a streamed copy that was never renamed: as after a kill, the next open removes it
            try:
                self._copy.close()
            except (OSError, RuntimeError):
                pass
            self._copy = None
        if self._fd is not None:
            os.close(self._fd)  # also drops the flock
            self._fd = None


# ---------------------------------------------------------------------------------------------------- readers


def read_runs(path: str | os.PathLike[str], *, load_vectors: bool = True) -> Iterator[RunRecord]:
    """Yields every committed run of a store (layout 1 in id order, layout 2 in table order; records still only in
    the journal are not included).

    ``load_vectors=False`` skips the vectors (``vectors``/``units`` empty): a fast scan of params, status and
    measurements. The file stays open until the iterator is exhausted or closed.
    """
    with h5py.File(path, "r") as f:
        if store_layout(f) == 1:
            runs = f["runs"]
            for rid in runs:
                yield _read_group(rid, runs[rid], load_vectors)
            return
        reader = _V2Reader(f)
        for row in range(reader.n):
            yield reader.record(row, load_vectors)


def read_run(path: str | os.PathLike[str], id: str) -> RunRecord:
    """One committed run by id; ``KeyError`` naming the id and the file when it is absent."""
    with h5py.File(path, "r") as f:
        if store_layout(f) == 1:
            runs = f["runs"]
            if id not in runs:
                raise KeyError(f"no run {id!r} in {path}")
            return _read_group(id, runs[id])
        reader = _V2Reader(f)
        rows = np.nonzero(reader.columns["id"] == id)[0]
        if not rows.size:
            raise KeyError(f"no run {id!r} in {path}")
        return reader.record(int(rows[0]))


def open_runs(path: str | os.PathLike[str]) -> "Runs":
    """The analysis view of a store (layout 1 or 2): ``.table()``, ``.to_xarray(vector, grid=None)``, iteration.
    See :class:`spicenet.store_analysis.Runs`."""
    from spicenet.store_analysis import Runs

    return Runs(path)
