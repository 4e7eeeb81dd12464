"""``paxctl bench``'s measuring side: workloads, the timed run, the statistics and a throwaway
local cluster. Kept out of ``paxctl.cli`` so the command module only parses and prints, and so
a Python user can drive the same measurements (``paxctl.bench.runner.measure``)."""
