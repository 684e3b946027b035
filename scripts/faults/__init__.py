"""The fault matrix's cases (`scripts/fault_matrix.py` runs them).

- core: a case, its context (temporary folder, processes, shared services), the classifier
- worker: train.py with hooks that inject a fault at a step or during a save
- services: the Cloud Storage emulator and a throwaway PostgreSQL, started on first use
- training: signals at steps and during saves, NaN losses, full disks
- workdir: read-only, busy, finished or reconfigured workdirs, damaged files; config values
- processes: sweep workers (journal, PostgreSQL), two jax.distributed processes
- storage: gs:// (the emulator), the compilation cache, eval.py
- inputs: folder datasets, oneDNN
"""

from scripts.faults import inputs, processes, storage, training, workdir

CASES = [*training.CASES, *workdir.CASES, *processes.CASES, *storage.CASES, *inputs.CASES]
names = [c.name for c in CASES]
assert len(set(names)) == len(names), "case names must be unique"
