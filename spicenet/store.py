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
_MAGIC = b"SNJ1"
_FRAME = struct.Struct("<4sQI")  # magic, payload length, crc32(payload)
_JSON_LEN = struct.Struct("<I")
_STATUSES = ("ok", "failed", "measure_failed")  # measure_failed: simulated, a measurement failed


class StoreError(SpicenetError):
    """The run store cannot be opened or written (in use, malformed, config mismatch on resume)."""


class StoreInputError(StoreError, UsageError):
    """The file given as a run store is not one, or (on resume) holds another sweep: bad input (CLI exit 2)."""


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
_CHUNK = 8192


def _new_column(group: h5py.Group, name: str, kind: str, rows: int, compression: str | None) -> h5py.Dataset:
    if kind == "str":
        return group.create_dataset(name, shape=(rows,), maxshape=(None,), dtype=_STR_DTYPE, chunks=(_CHUNK,))
    dtype = np.dtype(kind)
    fill = np.nan if dtype.kind in "fc" else (-1 if dtype.kind == "i" else 0)
    return group.create_dataset(name, shape=(rows,), maxshape=(None,), dtype=dtype, chunks=(_CHUNK,),
                                fillvalue=fill, compression=compression)


def _write_at(ds: h5py.Dataset, rows: np.ndarray, values: np.ndarray, contiguous: bool) -> None:
    if contiguous:
        ds[int(rows[0]):int(rows[0]) + len(rows)] = values
    else:
        order = np.argsort(rows, kind="stable")
        r, v = rows[order], values[order]
        keep = np.r_[r[1:] != r[:-1], True]  # the last write of a row wins
        ds[r[keep].tolist()] = v[keep]


def _as_column(values: list[Any], kind: str) -> np.ndarray:
    if kind == "str":
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    return np.array([np.nan if v is None else v for v in values], dtype=np.dtype(kind))


def _value_kind(value: Any) -> str:
    if isinstance(value, str):
        return "str"
    return "f8"


def _promote_to_text(group: h5py.Group, name: str, rows: int) -> h5py.Dataset:
    old = group[name]
    values = old[:]
    attrs = dict(old.attrs)
    del group[name]
    ds = _new_column(group, name, "str", rows, None)
    ds[: len(values)] = np.array(["" if np.isnan(v) else repr(float(v)) for v in values], dtype=object)
    ds.attrs.update(attrs)
    return ds


def _axis_key(name: str, arr: np.ndarray) -> tuple[str, bytes]:
    import hashlib

    return name, hashlib.blake2b(arr.dtype.str.encode() + arr.tobytes(), digest_size=16).digest()


@functools.lru_cache(maxsize=4096)
def _extra_cached(items: tuple) -> str:
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


class _Layout2:
    """In-memory index of a layout-2 file (id -> row, netlist -> deck, axis hash -> axis) and the batch writer."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.n = 0
        self.decks: dict[str, int] = {}
        self.axes: dict[tuple[str, bytes], int] = {}
        self.targets: dict[str, int] = {}

    @staticmethod
    def create(f: h5py.File) -> None:
        f.attrs["layout"] = json.dumps(_LAYOUT_DOC, sort_keys=True)
        table = f.create_group("table")
        table.attrs["rows"] = np.int64(0)
        for name, (kind, _) in _COLUMNS.items():
            _new_column(table, name, kind, 0, None)
        table.create_group("params")
        table.create_group("measure")
        decks = f.create_group("decks")
        _new_column(decks, "netlist", "str", 0, None)
        _new_column(decks, "process", "str", 0, None)
        axes = f.create_group("axes")
        for name, kind in (("name", "str"), ("unit", "str"), ("offset", "i8"), ("length", "i8")):
            _new_column(axes, name, kind, 0, None)
        axes.create_dataset("hash", shape=(0, 2), maxshape=(None, 2), dtype=np.uint64, chunks=(_CHUNK, 2))
        axes.create_dataset("data", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1 << 14,))
        f.create_group("vectors")
        _new_column(f.create_group("alters"), "target", "str", 0, None)

    def load(self, f: h5py.File) -> dict[str, str]:
        """Index an existing file; returns id -> status."""
        table = f["table"]
        self.n = int(table.attrs["rows"])
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

    def _write_alters(self, f: h5py.File, table: h5py.Group, rows: np.ndarray,
                      alter_values: list[list[tuple[str, float]]], n: int, contiguous: bool,
                      compression: str | None) -> None:
        """The chips' numeric alter deltas: ``/alters/target`` (``"alter xm1 delvto"``) and one row of
        ``/table/alter_values`` (N x targets, NaN: not altered) per run."""
        new = []
        for numeric in alter_values:
            for target, _ in numeric:
                if target not in self.targets:
                    self.targets[target] = len(self.targets)
                    new.append(target)
        k = len(self.targets)
        if new:
            if "alters" not in f:
                _new_column(f.create_group("alters"), "target", "str", 0, None)
            tcol = f["alters/target"]
            t0 = tcol.shape[0]
            tcol.resize((t0 + len(new),))
            tcol[t0:] = np.array(new, dtype=object)
        if "alter_values" not in table:
            if not k:
                return
            table.create_dataset("alter_values", shape=(n, k), maxshape=(None, None), dtype=np.float64,
                                 chunks=(_CHUNK, k), fillvalue=np.nan, compression=compression)
        ds = table["alter_values"]
        ds.resize((n, max(k, ds.shape[1])))
        if not any(alter_values):
            return
        block = np.full((len(rows), ds.shape[1]), np.nan)
        for i, numeric in enumerate(alter_values):
            for target, value in numeric:
                block[i, self.targets[target]] = value
        _write_at(ds, rows, block, contiguous)

    def write(self, f: h5py.File, records: list[RunRecord], compression: str | None) -> None:
        """Append (or, for ids already stored, overwrite) ``records``: their table rows, each new deck and axis
        once, the parameter and measurement columns and the ragged vectors; ``table.attrs["rows"]`` last."""
        if not records:
            return
        rows, contiguous = self._assign_rows(records)
        deck_of = self._write_decks(f["decks"], records)
        axis_of = self._write_axes(f["axes"], records)
        table = f["table"]
        alter_values = self._write_base(table, records, rows, contiguous, deck_of, axis_of)
        self._write_alters(f, table, rows, alter_values, self.n, contiguous, compression)
        for group_name, attr, units_attr in (("params", "params", "param_units"),
                                             ("measure", "measurements", "measurement_units")):
            self._write_named_columns(table[group_name], records, attr, units_attr, rows, contiguous, compression)
        self._write_vectors(f["vectors"], records, rows, contiguous, compression)
        table.attrs["rows"] = np.int64(self.n)

    def _assign_rows(self, records: list[RunRecord]) -> tuple[np.ndarray, bool]:
        """The table row of each record (a new id gets the next row) and whether they are one contiguous block."""
        n0 = self.n
        rows = np.empty(len(records), dtype=np.int64)
        for k, rec in enumerate(records):
            row = self.rows.get(rec.id)
            if row is None:
                row = self.rows[rec.id] = self.n
                self.n += 1
            rows[k] = row
        return rows, bool(np.array_equal(rows, np.arange(n0, n0 + len(records))))

    def _write_decks(self, decks: h5py.Group, records: list[RunRecord]) -> list[int]:
        """Each distinct netlist once (with its process); returns every record's deck index."""
        new_decks = []
        deck_of = []
        for rec in records:
            d = self.decks.get(rec.netlist)
            if d is None:
                d = self.decks[rec.netlist] = len(self.decks)
                new_decks.append(rec)
            deck_of.append(d)
        if new_decks:
            d0 = decks["netlist"].shape[0]
            for name in ("netlist", "process"):
                decks[name].resize((d0 + len(new_decks),))
                decks[name][d0:] = np.array([getattr(r, name) for r in new_decks], dtype=object)
        return deck_of

    def _write_axes(self, axes: h5py.Group, records: list[RunRecord]) -> list[int]:
        """Each distinct scale vector (time, frequency, sweep axis) once; returns every record's axis (-1: none)."""
        axis_of = []
        new_axes: list[tuple[str, str, np.ndarray, bytes]] = []
        for rec in records:
            if rec.scale is None:
                axis_of.append(-1)
                continue
            arr = np.asarray(rec.vectors[rec.scale], dtype=np.float64).reshape(-1)
            akey = _axis_key(rec.scale, arr)
            a = self.axes.get(akey)
            if a is None:
                a = self.axes[akey] = len(self.axes)
                new_axes.append((rec.scale, rec.units.get(rec.scale, ""), arr, akey[1]))
            axis_of.append(a)
        if new_axes:
            a0 = axes["name"].shape[0]
            e0 = axes["data"].shape[0]
            lengths = np.array([len(a[2]) for a in new_axes], dtype=np.int64)
            offsets = e0 + np.concatenate([[0], np.cumsum(lengths)[:-1]])
            for name in ("name", "unit", "offset", "length", "hash"):
                axes[name].resize(a0 + len(new_axes), axis=0)
            axes["name"][a0:] = np.array([a[0] for a in new_axes], dtype=object)
            axes["unit"][a0:] = np.array([a[1] for a in new_axes], dtype=object)
            axes["offset"][a0:] = offsets
            axes["length"][a0:] = lengths
            axes["hash"][a0:] = np.frombuffer(b"".join(a[3] for a in new_axes), dtype=np.uint64).reshape(-1, 2)
            axes["data"].resize((e0 + int(lengths.sum()),))
            axes["data"][e0:] = np.concatenate([a[2] for a in new_axes])
        return axis_of

    def _write_base(self, table: h5py.Group, records: list[RunRecord], rows: np.ndarray, contiguous: bool,
                    deck_of: list[int], axis_of: list[int]) -> list[list[tuple[str, float]]]:
        """The fixed columns (``_COLUMNS``: id, point, chip, seed, status, error, ...); returns each record's
        numeric alter deltas (target, value) for :meth:`_write_alters`."""
        base: dict[str, list[Any]] = {name: [] for name in _COLUMNS}
        extras = []
        alter_values: list[list[tuple[str, float]]] = []
        for k, rec in enumerate(records):
            attrs = dict(rec.attrs)
            retries = attrs.pop("retries", [])
            base["id"].append(rec.id)
            base["point"].append(rec.point if rec.point is not None else deck_of[k])
            base["chip"].append(rec.chip)
            base["seed"].append(rec.seed)
            base["status"].append(rec.status)
            base["error"].append(rec.error or "")
            base["analysis"].append(attrs.pop("analysis", "") or "")
            base["process"].append(rec.process)
            wall = attrs.pop("wall_s", None)
            base["wall_s"].append(np.nan if wall is None else float(wall))
            base["retries"].append(len(retries) if isinstance(retries, list) else int(retries or 0))
            if retries:
                attrs["retries"] = retries
            base["deck"].append(deck_of[k])
            base["axis"].append(axis_of[k])
            numeric, text = _split_alters(rec.alters)
            base["alters"].append("\n".join(text))
            alter_values.append(numeric)
            extras.append(_extra_text(attrs) if attrs else "")
        base["extra"] = extras
        for name, (kind, _) in _COLUMNS.items():
            ds = table[name]
            ds.resize((self.n,))
            _write_at(ds, rows, _as_column(base[name], kind), contiguous)
        return alter_values

    def _write_named_columns(self, group: h5py.Group, records: list[RunRecord], attr: str, units_attr: str,
                             rows: np.ndarray, contiguous: bool, compression: str | None) -> None:
        """One column per parameter or measurement name (``attr`` of the records; float, or text once any value
        is text), unit in its attrs; columns this batch did not mention are only resized (fill values)."""
        n = self.n
        names: dict[str, None] = {}
        for rec in records:
            for key in getattr(rec, attr):
                names.setdefault(key, None)
        for key in names:
            values: list[Any] = [getattr(rec, attr).get(key) for rec in records]
            kind = "str" if any(isinstance(v, str) for v in values) else "f8"
            dname = dataset_name(key)
            if dname not in group:
                ds = _new_column(group, dname, kind, n, compression if kind != "str" else None)
                ds.attrs["name"] = key
                ds.attrs["unit"] = next((getattr(r, units_attr).get(key) for r in records
                                         if getattr(r, units_attr).get(key)), "")
            else:
                ds = group[dname]
                if kind == "str" and ds.dtype.kind != "O":
                    ds = _promote_to_text(group, dname, n)
                kind = "str" if ds.dtype.kind == "O" else "f8"
                ds.resize((n,))
            if kind == "f8":
                values = [float(v) if v is not None else np.nan for v in values]
            _write_at(ds, rows, _as_column(values, kind), contiguous)
        for dname in group:
            if group[dname].shape[0] != n:
                group[dname].resize((n,))

    def _write_vectors(self, vgroup: h5py.Group, records: list[RunRecord], rows: np.ndarray, contiguous: bool,
                       compression: str | None) -> None:
        """Ragged vectors: per vector name one group of concatenated values plus offset / length columns
        (-1: the run has no such vector); complex once any run's values are."""
        n = self.n
        vnames: dict[str, None] = {}
        for rec in records:
            for key in rec.vectors:
                if key != rec.scale:
                    vnames.setdefault(key, None)
        for key in vnames:
            dname = dataset_name(key)
            arrs = [rec.vectors.get(key) if key != rec.scale else None for rec in records]
            complex_ = any(a is not None and a.dtype.kind == "c" for a in arrs)
            if dname not in vgroup:
                g = vgroup.create_group(dname)
                g.attrs["name"] = key
                g.attrs["unit"] = next((r.units.get(key, "") for r in records if key in r.vectors), "")
                g.attrs["scalar"] = all(a is None or a.ndim == 0 for a in arrs)
                g.create_dataset("data", shape=(0,), maxshape=(None,), chunks=(1 << 14,),
                                 dtype=np.complex128 if complex_ else np.float64, compression=compression)
                for col in ("offset", "length"):
                    _new_column(g, col, "i8", n, compression)
            else:
                g = vgroup[dname]
                if any(a is not None and a.ndim != 0 for a in arrs):
                    g.attrs["scalar"] = False
                if complex_ and g["data"].dtype.kind != "c":
                    old = g["data"][:]
                    del g["data"]
                    g.create_dataset("data", data=old.astype(np.complex128), maxshape=(None,), chunks=(1 << 14,),
                                     compression=compression)
            data = g["data"]
            e0 = data.shape[0]
            lengths = np.array([-1 if a is None else a.size for a in arrs], dtype=np.int64)
            sizes = np.maximum(lengths, 0)
            offsets = e0 + np.concatenate([[0], np.cumsum(sizes)[:-1]])
            offsets[lengths < 0] = -1
            present = [a.reshape(-1) for a in arrs if a is not None]
            if present:
                data.resize((e0 + int(sizes.sum()),))
                data[e0:] = np.concatenate(present).astype(data.dtype, copy=False)
            for col, column in (("offset", offsets), ("length", lengths)):
                g[col].resize((n,))
                _write_at(g[col], rows, column, contiguous)
        for dname in vgroup:
            for col in ("offset", "length"):
                if vgroup[dname][col].shape[0] != n:
                    vgroup[dname][col].resize((n,))


def _text(ds: h5py.Dataset, n: int | None = None) -> np.ndarray:
    return ds.asstr()[: ds.shape[0] if n is None else n]


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
        self._axes: tuple | None = None
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
    ) -> None:
        _check_store_options(commit_interval_s, max_commit_fraction, max_pending_bytes, journal_fsync_s,
                             compression, compress_min_len)
        config_text = _config_text(config)

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
        self._pending: dict[str, RunRecord] = {}
        self._pending_bytes = 0
        self._pending_root: dict[str, Any] = {}
        self._status: dict[str, str] = {}
        self._fd: int | None = None
        self._last_overhead = 0.0
        self._last_commit_end = time.monotonic()
        self._last_fsync = time.monotonic()
        #: counters for benchmarks/tests: commits done, seconds spent in commits, records committed
        self.stats = {"commits": 0, "commit_s": 0.0, "overhead_s": 0.0, "committed": 0, "replayed": 0}

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
        for kind, meta, arrays in replay:
            if kind == "run":
                rec = _record_from_journal(meta, arrays, last_netlist)
                last_netlist = rec.netlist
                self._pending.pop(rec.id, None)
                self._pending[rec.id] = rec
                self._status[rec.id] = rec.status
            elif kind == "root":
                self._pending_root.update(meta)
        self.stats["replayed"] = sum(1 for kind, _, _ in replay if kind == "run")
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
                _Layout2.create(f)
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
                raise StoreInputError(
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
        for rec in recs:
            self._pending.pop(rec.id, None)
            self._pending[rec.id] = rec
            self._pending_bytes += sum(a.nbytes for a in rec.vectors.values()) + 256
            self._status[rec.id] = rec.status
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

    def commit(self) -> None:
        """Writes the pending records into a copy of the file and atomically replaces the file with it.

        On a failure (a full disk) the copy is removed, the live file and the journal are untouched (every record
        stays recoverable) and a ``StoreError`` is raised once."""
        fd = self._check_open()
        if not self._pending and not self._pending_root:
            if os.fstat(fd).st_size:
                os.ftruncate(fd, 0)
                self._journal_netlist = None
            return
        t0 = time.monotonic()
        tmp = _tmp_path(self.path)
        write_s = 0.0
        # Refuse a commit that cannot fit (the copy of the file plus the batch, with margin) before h5py sees a full
        # disk: h5py reports a failed flush as RuntimeError and prints "Exception ignored" tracebacks on teardown.
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
        try:
            _copy_file(self.path, tmp)
            with h5py.File(tmp, "r+") as f:
                for key, value in self._pending_root.items():
                    f.attrs[key] = value
                t_write = time.monotonic()
                if self._layout == 1:
                    runs = f["runs"]
                    for rec in self._pending.values():
                        _write_group(runs, rec, self.compression, self.compress_min_len)
                else:
                    self._v2.write(f, list(self._pending.values()), self.compression)
                write_s = time.monotonic() - t_write
            self._publish(tmp)
        except BaseException as exc:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
            if self._layout == 2:  # the in-memory index may hold rows of the failed batch: rebuild it
                self._v2 = _Layout2()
                try:
                    with h5py.File(self.path, "r") as f:
                        self._v2.load(f)
                except OSError:
                    pass
            # a full disk shows as OSError from the copy and as RuntimeError from h5py's flush/close of the copy
            if isinstance(exc, (OSError, RuntimeError)):
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0][:200]
                if "errno = 28" in str(exc):
                    why = "No space left on device"
                raise StoreError(f"run store {self.path}: commit failed ({why}); nothing half-written "
                                 f"is left, the pending records stay in the journal (resume with --resume)") from None
            raise
        # A kill here leaves the records both in the file and in the journal: replay rewrites them identically.
        os.ftruncate(fd, 0)
        os.fsync(fd)
        self._journal_netlist = None
        self.stats["commits"] += 1
        self.stats["committed"] += len(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._pending_root.clear()
        end = time.monotonic()
        self._last_overhead = end - t0 - write_s
        self.stats["commit_s"] += end - t0
        self.stats["overhead_s"] += end - t0 - write_s
        self._last_commit_end = end

    def close(self) -> None:
        """Commits what is pending, removes the empty journal and releases the lock. Idempotent. When the commit
        fails the journal is kept (and the lock released): ``StoreError``, raised once."""
        if self._fd is None:
            return
        try:
            self.commit()
        except BaseException:
            self._abandon()
            raise
        os.unlink(self.journal)
        self._abandon()

    def _abandon(self) -> None:
        """Releases the journal without committing (what a kill does; used on errors and by tests)."""
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
