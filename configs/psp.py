r"""PSP: positive sample propagation along the audio-visual event line (Zhou, Zheng, Zhong, Hao and Wang, CVPR
2021), on the AVE task.

Run card
  Command:   python launch/train.py --config=configs/psp.py [--workdir=./workdir/psp]
             (real features: add --config.data.features_dir=/path/to/ave_features; docs/ave.md)
  Recipe:    official (jasongief/PSP_CVPR_2021, fully supervised main): Adam 1e-3, batch 128, 300 epochs, the
             learning rate x0.8 after epochs 60 and 120; cross-entropy + 100 x the AVPS loss; pruning
             threshold 0.099. Differences: the AVPS soft targets are computed per batch (the official loader
             never clears its buffer, so earlier batches' targets leak: losses.psp.OfficialAVPSTargets
             reproduces it for a loader that wants it); the best epoch is chosen on validation (the official
             script keeps the best *test* epoch).
             SYNTHETIC data (features_dir empty): 30 epochs on the 800-clip SYNTHETIC training subset.
  Hardware:  2 CPU cores are enough.
  Expected:  paper figures (AVE test, real features, supervised): the LEAP paper's re-run, Table 5 "DCH": 74.3%
             segment accuracy (the PSP paper's own table, selected on test: its Table 1). SYNTHETIC: docs/ave.md.
  Evaluate:  python launch/evaluate.py --workdir=./workdir/psp --split=test

Presets (the string after the colon):
  weak       weakly supervised PSP (threshold 0.095, the sigmoid-weighted head, BCE against the video label;
             x0.8 after epochs 80 and 160). PSP's own target, prob_label.h5 (each video's share of event and
             background segments), leaks durations: only with --config.data.ave.prob_labels=FILE.
  tiny, weak_tiny   a micro run on a few SYNTHETIC clips for one epoch (tests train them).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The PSP config; `arg` picks a preset (see the module docstring)."""
  common.check_preset(arg, common.AVE_PRESETS)
  config = common.get_config()
  config.task = "ave"
  config.seed = 0
  config.num_epochs = 300
  config.synthetic_num_epochs = 30
  config.batch_size = 128
  config.eval_batch_size = 128
  config.model.encoder = "psp"
  config.model.decoder = "dch"
  config.loss.name = "psp"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.decay_every_epochs = 0
  config.optimizer.decay_epochs = (60, 120)
  config.optimizer.decay_factor = 0.8
  config.checkpoint.best_metric = "accuracy"
  # The test split followed along training: the report gives the official scripts' best-test-epoch figure
  # beside the validation-selected one (avvp_jax/followed_evals.py).
  config.evals.test = dict(split="test")
  if arg in ("weak", "weak_tiny"):
    config.data.ave.supervision = "weak"
    config.optimizer.decay_epochs = (80, 160)
  return common.apply_preset(config, arg, common.AVE_PRESETS)
