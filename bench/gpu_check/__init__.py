"""The parts of the prepared GPU check (``bench/gpu.py``): its report, the faces it carries, and one module per
section: ``cuda_tests`` (a), ``throughput`` (b), ``sharing`` (c) and ``recipe`` (d)."""
