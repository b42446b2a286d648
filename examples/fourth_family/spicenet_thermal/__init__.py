"""spicenet-thermal: a fourth spicenet cell family in a package of its own (entry point ``spicenet.families``:
``thermal = spicenet_thermal.family:FAMILY``). See :mod:`spicenet_thermal.family`."""
