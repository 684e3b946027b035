"""The fault matrix's cases (`scripts/fault_matrix.py` runs them).

- core: a case, its context (temporary folder, processes, shared services), the classifier
- worker: train.py with hooks that inject a fault at a step or during a save
- training: signals, NaN losses, full and read-only disks, workdirs, config values
- storage: gs:// (the Cloud Storage emulator), sweeps (journal, PostgreSQL), two processes,
  the compilation cache, eval.py
- inputs: folder datasets, oneDNN
"""

from scripts.faults import inputs, storage, training

CASES = [*training.CASES, *storage.CASES, *inputs.CASES]
names = [c.name for c in CASES]
assert len(set(names)) == len(names), "case names must be unique"
