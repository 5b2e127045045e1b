"""The old import path of the LLP metrics, kept for users' code: `avvp_jax.metrics` is
`avvp_jax.tasks.llp.metrics` (`avvp_jax.metrics.parsing_scores`, `from avvp_jax.metrics import KEYS`).
"""

import sys

from avvp_jax.tasks.llp import metrics as _metrics

sys.modules[__name__] = _metrics
