r"""AVE-ECCV18's DMRN: the A+V-att network with dual multimodal residual fusion (`TBMRF_Net`) in place of the
concatenation (Tian et al., ECCV 2018), on the AVE task.

Run card
  Command:   python launch/train.py --config=configs/dmrn.py [--workdir=./workdir/dmrn]
             (real features: add --config.data.features_dir=/path/to/ave_features; docs/ave.md)
  Recipe:    configs/ave.py's (the official supervised_main.py with --model_name DMRN): Adam 1e-3, batch 64,
             300 epochs, x0.1 after iteration 15,000 (here after epoch 288). The released DMRN.pt was
             fine-tuned from an A+V-att checkpoint; this card trains from scratch.
  Hardware:  2 CPU cores are enough.
  Expected:  the AVE paper's Table 1 (real features); SYNTHETIC: docs/ave.md.
  Evaluate:  python launch/evaluate.py --workdir=./workdir/dmrn --split=test

Presets: weak (DMRN fusion in the weak network: no official counterpart, offered as a variant), tiny,
weak_tiny (see configs/ave.py).
"""

import ml_collections

from configs import ave


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The DMRN config: configs/ave.py with DMRN fusion; `arg` picks a preset."""
  config = ave.get_config(arg)
  config.model.ave.fusion = "dmrn"
  return config
