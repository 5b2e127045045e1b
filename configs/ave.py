r"""AVE-ECCV18's A+V-att: audio-guided visual attention, BiLSTMs, a softmax per segment (Tian, Shi, Li, Duan and
Xu, "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018), on the AVE task.

Run card
  Command:   python launch/train.py --config=configs/ave.py [--workdir=./workdir/ave]
             (real features: add --config.data.features_dir=/path/to/ave_features, the folder of the released
             audio_feature.h5 and visual_feature.h5; docs/ave.md)
  Recipe:    official (YapengTian/AVE-ECCV18 supervised_main.py): Adam 1e-3, batch 64, 300 epochs, the
             learning rate x0.1 after 15,000 iterations (its StepLR is stepped per iteration: epoch 288 of 52
             steps; here per epoch, after epoch 288), MultiLabelSoftMarginLoss on the softmax output.
             Differences: the last partial batch of an epoch is trained on (the official loader drops 11 clips
             and never shuffles); the best epoch is chosen on validation every epoch (official: every 5 epochs).
             SYNTHETIC data (features_dir empty): 20 epochs on the 800-clip SYNTHETIC training subset.
  Hardware:  2 CPU cores are enough (a 0.9M-parameter model); real features: the 4,143-clip build takes
             about 4 GB of disk.
  Expected:  paper figures (AVE test, real features, supervised): the LEAP paper's re-run of this code, Table 5
             "DCH": 68.2% segment accuracy (the AVE paper's own table: its Table 1). SYNTHETIC: docs/ave.md.
  Evaluate:  python launch/evaluate.py --workdir=./workdir/ave --split=test

Presets (the string after the colon):
  weak       the weakly supervised W-A+V-att (weak_supervised_main.py: video labels only, plus the 178
             background-only videos; max over time, softmax; 250 epochs, the StepLR never fires).
  tiny, weak_tiny   a micro run on a few SYNTHETIC clips for one epoch (tests train them).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The A+V-att config; `arg` picks a preset (see the module docstring)."""
  common.check_preset(arg, common.AVE_PRESETS)
  config = common.get_config()
  config.task = "ave"
  config.seed = 0
  config.num_epochs = 300
  config.synthetic_num_epochs = 20
  config.batch_size = 64
  config.eval_batch_size = 64
  config.model.encoder = "ave"  # the whole A+V-att network
  config.model.decoder = "dch"  # its own softmax head
  config.model.ave.fusion = "concat"
  config.loss.name = "ave"
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.decay_every_epochs = 0
  config.optimizer.decay_epochs = (288,)
  config.optimizer.decay_factor = 0.1
  config.checkpoint.best_metric = "accuracy"
  # The test split followed along training: the report gives the official scripts' best-test-epoch figure
  # beside the validation-selected one (avvp_jax/followed_evals.py).
  config.evals.test = dict(split="test")
  if arg in ("weak", "weak_tiny"):
    config.data.ave.supervision = "weak"
    config.num_epochs = 250
    config.optimizer.decay_epochs = ()  # 250 epochs of 54 steps never reach iteration 15,000
  return common.apply_preset(config, arg, common.AVE_PRESETS)
