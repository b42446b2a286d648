"""SPICE layer: parameter values with units, netlist templates, processes, the ngspice engine and its results."""
