r"""CMBS with the LEAP head: CMBS up to its heads (after the audio-visual interactions), LEAP's label-query decoder
on its audio and visual streams (the LEAP paper's Table 5, "CMBS + LEAP"; models/localizer_leap.py).

Run card
  Command:   python launch/train.py --config=configs/cmbs_leap.py [--workdir=./workdir/cmbs_leap]
             (real features: add --config.data.features_dir=/path/to/ave_features; docs/ave.md)
  Recipe:    the encoder's official recipe (configs/cmbs.py: Adam 7e-4, batch 64, 200 epochs, x0.5 after epochs
             10, 20, 30, gradient-norm clip 0.5, seed 43; weak: its weak network and recipe, seed 666); CMBS's
             heads and their four-term loss are replaced by LEAP's head and loss (its gates still modulate the
             queries, trained through LEAP's loss). SYNTHETIC data: 20 epochs on the 800-clip subset.
  Head:      as configs/psp_leap.py (which says why).
  Hardware:  2 CPU cores are enough; three seeds at once peaked at 15.7 GB of memory.
  Expected:  paper figures (AVE test, real features, supervised), the LEAP paper's Table 5: DCH 74.5, LEAP 77.9
             segment accuracy. SYNTHETIC, 3 seeds: test 50.9 ± 4.4 against DCH's 86.6 ± 1.4, still rising at
             epoch 20 (docs/ave.md, "DCH vs LEAP").
  Evaluate:  python launch/evaluate.py --workdir=./workdir/cmbs_leap --split=test

Presets (the string after the colon):
  weak       weakly supervised CMBS's network and recipe with the LEAP head (video-level terms only).
  tiny, weak_tiny   a micro run on a few SYNTHETIC clips for one epoch (tests train them).
"""

import ml_collections

from configs import cmbs
from configs import psp_leap


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The CMBS + LEAP config; `arg` picks a preset (see the module docstring)."""
  return psp_leap.with_leap_head(cmbs.get_config(arg))
