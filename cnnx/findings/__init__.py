"""The findings suite: the field's lessons rerun, each with a verdict (scripts/findings.py).

- `verdict`: the decision rule (a comparison of two arms over seeds; holds / does not hold at
  this scale / inconclusive).
- `registry`: what a finding is (`Finding`, `Measurement`), the scales, the findings by name.
- `runs`: a finding's runs (config file + overrides), trained or resumed in their workdirs,
  and what they left (`RunRecord`).
- `suite`: runs findings into a directory and keeps its findings.json.
- `figures`, `report`: the PNGs, and the Markdown page of a directory.
- One module per finding, in the suite's order: `degradation`, `vanishing`, `batchnorm`,
  `initialisation`, `regularisation`, `bottleneck`, `scaling`, `fixres`, `transfer`.
"""

# Importing a finding registers it (`Finding.number` orders the suite).
from cnnx.findings import (  # noqa: F401
    batchnorm,
    bottleneck,
    degradation,
    fixres,
    initialisation,
    regularisation,
    scaling,
    transfer,
    vanishing,
)
