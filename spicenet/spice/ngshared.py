"""ngspice shared library through PySpice 1.5's ``NgSpiceShared``, with a compatibility layer.

PySpice 1.5 predates ngspice 39 and numpy 2. What this module fixes (measured; summary in the README, "Engine"):

- "Unsupported Ngspice version 39" warning: harmless (falls back to the v34 tables); PySpice's logger is silenced.
- ``exec_command`` raises on any stderr line, including ngspice's informational "Note:" and "Using SPARSE" lines:
  we call ``ngSpice_Command`` directly and classify the captured lines ourselves.
- vectors are read with ``ngSpice_AllVecs``/``ngGet_Vec_Info`` into numpy arrays (copies), named and given units by
  the vector type with the same rule as the batch mode (``results.vector_name``).
- the library is found as ``libngspice.so`` or, without the -dev package, ``libngspice.so.0``.
- ngspice resets the OpenMP thread count on every analysis: ``set num_threads=1`` before each load.

One ``Session`` per process (the library is a process-wide singleton and not thread-safe): the engine runs it in
worker processes that are recycled to keep memory flat.
"""

from __future__ import annotations

import ctypes.util
import logging
import os
import re
from pathlib import Path

import numpy as np

from spicenet.spice.results import SCALE_NAMES, Plot, vector_name, vector_unit

# stderr lines of ngspice that are informational, not errors.
_BENIGN = re.compile(r"^(note:|warning:|using sparse|doing analysis|no\. of data rows|reference value|"
                     r"total analysis time|total elapsed|circuit:|\s*$|supplies reduced|trying gmin|"
                     r"gmin step|source step|the ngspice|using spice)", re.IGNORECASE)


def _library_path() -> str:
    """Locate libngspice: $NGSPICE_LIBRARY_PATH, then libngspice.so, then libngspice.so.0 (no -dev package)."""
    env = os.environ.get("NGSPICE_LIBRARY_PATH")
    if env:
        return env
    for candidate in ("/usr/lib/x86_64-linux-gnu/libngspice.so", "/usr/lib/aarch64-linux-gnu/libngspice.so",
                      "/usr/lib/libngspice.so", "/usr/local/lib/libngspice.so"):
        if Path(candidate).exists():
            return candidate
    found = ctypes.util.find_library("ngspice")
    if found:
        return found
    raise OSError("libngspice not found: install it (apt-get install libngspice0) or set NGSPICE_LIBRARY_PATH")


class Session:
    """An ngspice shared-library instance in this process, with captured output.

    ``command(text)`` runs one ngspice command and returns the lines it printed; ``load(deck)`` loads a circuit;
    ``vectors(plot)`` returns the plot's vectors. Errors are classified by the caller (engine) from ``lines``.
    """

    def __init__(self) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        logging.getLogger("PySpice").setLevel(logging.CRITICAL)
        from PySpice.Spice.NgSpice import Shared as shared_module

        shared_module.NgSpiceShared.LIBRARY_PATH = _library_path()
        lines: list[str] = []
        self._lines = lines

        ffi = shared_module.ffi

        class _Captured(shared_module.NgSpiceShared):
            # PySpice's own callback logs every line and keeps all of them in growing lists; ours only keeps the
            # lines of the current command (ffi.callback binds whatever _send_char the class has at init).
            @staticmethod
            def _send_char(message_c, ngspice_id, user_data):  # noqa: ANN001, ANN205 - cffi callback
                lines.append(ffi.string(message_c).decode("utf8", "replace"))
                return 0

            @staticmethod
            def _send_stat(message_c, ngspice_id, user_data):  # noqa: ANN001, ANN205 - cffi callback
                return 0

        self._ffi = shared_module.ffi
        self._ng = _Captured(ngspice_id=0, send_data=False)
        self._lib = self._ng._ngspice_shared
        self.version = int(self._ng.ngspice_version or 0)
        # raw vector name -> the names it can have (as a voltage, a current, any other type); (raw, type) -> (name,
        # unit): the same few names recur in every run, so read_plot computes them once
        self._candidates: dict[str, frozenset[str]] = {}
        self._named: dict[tuple[str, int], tuple[str, str]] = {}
        self.kept: list[str] = []
        self.command("set num_threads=1")

    # -- commands ---------------------------------------------------------------------------------------------
    def command(self, text: str) -> list[str]:
        """Run one ngspice command; return the output lines ("stdout ..."/"stderr ..." prefixes kept)."""
        if "\n" in text or len(text) > 1023:
            raise ValueError(f"an ngspice command must be one line of < 1024 characters: {text[:60]!r}")
        self._lines.clear()
        rc = self._lib.ngSpice_Command(text.encode("ascii"))
        out = list(self._lines)
        if rc:
            out = out + [f"stderr spicenet: ngSpice_Command returned {rc} for {text!r}"]
        return out

    def load(self, deck: str) -> list[str]:
        """Load a circuit (all lines, ``.end`` included); return ngspice's output lines of the parse."""
        lines = [line for line in deck.splitlines()] + [""]
        keep = [self._ffi.new("char[]", line.encode("utf8")) for line in lines] + [self._ffi.NULL]
        array = self._ffi.new("char *[]", keep)
        self._lines.clear()
        rc = self._lib.ngSpice_Circ(array)
        out = list(self._lines)
        if rc:
            out = out + [f"stderr spicenet: ngSpice_Circ returned {rc}"]
        return out

    def clear_log(self) -> None:
        self._lines.clear()

    # -- results ----------------------------------------------------------------------------------------------
    def current_plot(self) -> str:
        return self._ffi.string(self._lib.ngSpice_CurPlot()).decode("utf8", "replace")

    def plot_names(self) -> list[str]:
        names = []
        array = self._lib.ngSpice_AllPlots()
        i = 0
        while array[i] != self._ffi.NULL:
            names.append(self._ffi.string(array[i]).decode("utf8", "replace"))
            i += 1
        return names

    def read_plot(self, plot_name: str, save: set[str] | None = None, raw_names: list[str] | None = None) -> Plot:
        """Copy the vectors of ``plot_name`` into numpy (real float64 or complex128), names normalised.

        ``raw_names``: look up just these ngspice vectors instead of walking the whole plot (the ``kept`` list of an
        earlier call on a plot of the same deck and analysis, which has the same vectors). ``self.kept``: the raw
        names this call kept."""
        ffi, lib = self._ffi, self._lib
        if raw_names is None:
            all_vecs = lib.ngSpice_AllVecs(plot_name.encode("utf8"))
            raw_names = []
            i = 0
            while all_vecs[i] != ffi.NULL:
                raw_names.append(ffi.string(all_vecs[i]).decode("utf8", "replace"))
                i += 1
        vectors: dict[str, np.ndarray] = {}
        units: dict[str, str] = {}
        kept: list[str] = []
        for raw_name in raw_names:
            if save is not None:  # skip, without asking ngspice for it, a vector no type could make a kept name
                candidates = self._candidates.get(raw_name)
                if candidates is None:
                    candidates = self._candidates[raw_name] = frozenset(
                        vector_name(raw_name, kind) for kind in ("voltage", "current", "notype"))
                if candidates.isdisjoint(save) and candidates.isdisjoint(SCALE_NAMES):
                    continue
            info = lib.ngGet_Vec_Info(f"{plot_name}.{raw_name}".encode("utf8"))
            if info == ffi.NULL:
                continue
            key = (raw_name, int(info.v_type))
            named = self._named.get(key)
            if named is None:
                named = self._named[key] = (vector_name(raw_name, key[1]), vector_unit(key[1]))
            name, unit = named
            if save is not None and name not in save and name not in SCALE_NAMES:
                continue
            length = int(info.v_length)
            if info.v_compdata == ffi.NULL:
                data = np.frombuffer(ffi.buffer(info.v_realdata, length * 8), dtype=np.float64).copy()
            else:
                pairs = np.frombuffer(ffi.buffer(info.v_compdata, length * 16), dtype=np.float64)
                data = pairs[0::2] + 1j * pairs[1::2]
            vectors[name] = data
            units[name] = unit
            kept.append(raw_name)
        self.kept = kept
        return Plot(name=plot_name, vectors=vectors, units=units)

    @staticmethod
    def errors(lines: list[str]) -> list[str]:
        """The lines of ``lines`` that report errors (stderr lines that are not known to be informational),
        plus stdout lines that ngspice uses for parse errors ("Error on line ...")."""
        found = []
        for line in lines:
            prefix, _, content = line.partition(" ")
            text = content.strip()
            if prefix == "stderr" and not _BENIGN.match(text):
                found.append(text)
            elif prefix == "stdout" and re.match(r"^(error|.*\berror on line\b)", text, re.IGNORECASE):
                found.append(text)
        return found
