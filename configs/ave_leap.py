r"""A+V-att with the LEAP head: AVE-ECCV18's encoder up to its head, LEAP's label-query decoder on its audio and
visual streams (the LEAP paper's Table 5, "AVE + LEAP"; models/localizer_leap.py, docs/ave.md "DCH vs LEAP").

Run card
  Command:   python launch/train.py --config=configs/ave_leap.py [--workdir=./workdir/ave_leap]
             (real features: add --config.data.features_dir=/path/to/ave_features; docs/ave.md)
  Recipe:    the encoder's official recipe (configs/ave.py: Adam 1e-3, batch 64, 300 epochs, x0.1 after epoch 288;
             weak: 250 epochs): the LEAP paper says it used the encoders' official codes. What LEAP needed instead
             was a factor on its segment logits (x30, learned; configs/psp_leap.py). SYNTHETIC data (features_dir
             empty): 20 epochs on the 800-clip SYNTHETIC training subset, as the DCH row.
  Head:      configs/common.py's `model.localizer_leap` and `model.leap` (2 blocks, 8 heads, official variant), the
             packaged AVE label table (MiniLM, 28 event rows and Background), loss `leap` (tasks/ave/losses/leap.py).
             The choices, which were measured and how: configs/psp_leap.py (it holds them for all three cards).
  Hardware:  2 CPU cores are enough.
  Expected:  paper figures (AVE test, real features, supervised), the LEAP paper's Table 5: DCH 68.2, LEAP 68.8
             segment accuracy. SYNTHETIC (3 seeds, 20 epochs x 800 clips, val-selected test accuracy): 62.0 ± 3.0
             (DCH, configs/ave.py: 57.8 ± 5.8; this card with factor 1, LEAP's own logits: 39.8 ± 1.7). docs/ave.md.
  Evaluate:  python launch/evaluate.py --workdir=./workdir/ave_leap --split=test

Presets (the string after the colon):
  weak       the weak W-A+V-att recipe (video labels only, plus the background-only videos) with the LEAP head,
             trained on the video-level terms only.
  tiny, weak_tiny   a micro run on a few SYNTHETIC clips for one epoch (tests train them).
"""

import ml_collections

from configs import ave
from configs import psp_leap


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The A+V-att + LEAP config; `arg` picks a preset (see the module docstring)."""
  return psp_leap.with_leap_head(ave.get_config(arg))
