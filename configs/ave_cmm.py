r"""AVE-ECCV18's cross-modality localization (A2V / V2A): the two-tower matching network and its contrastive loss
(Tian, Shi, Li, Duan and Xu, "Audio-Visual Event Localization in Unconstrained Videos", ECCV 2018, Sec. 5), on
the AVE task's match split (`config.task = "ave_cmm"`, avvp_jax/tasks/ave/cmm_task.py).

Run card
  Command:   python launch/train.py --config=configs/ave_cmm.py [--workdir=./workdir/ave_cmm]
             (real features: add --config.data.features_dir=/path/to/ave_features, the folder of the released
             audio_feature.h5 and visual_feature.h5: the visual maps are averaged over the 7 x 7 grid in the
             model, which is what the released visual_feature_vec.h5 holds; docs/ave.md)
  Recipe:    official (YapengTian/AVE-ECCV18 cmm_train.py, Keras): two towers Dense 128, LeakyReLU 0.3, Dense 64
             (512-d visual vectors, 128-d VGGish), Euclidean distance, contrastive loss with margin 2 on each
             segment's own (visual, audio) pair (event segments match, background segments do not), Adam 1e-3
             (Keras defaults; its `step_decay` is defined but never used), 20 epochs, the
             {train,val,test}_order_match.h5 splits (`config.data.ave.splits = "match"`).
             Differences: a batch holds whole clips, all 10 pairs of each (official: 8 pairs shuffled across
             clips by Keras, unseeded); batch_size 1 clip (10 pairs a step, 3,339 steps an epoch against the
             official 4,174 steps of 8 pairs) is the nearest. The official code keeps the last epoch's weights;
             here the best epoch on val's A2V / V2A mean is kept too, and the final report scores it.
  Hardware:  2 CPU cores are enough (a 0.09M-parameter model); the real full build takes about 4 GB of disk.
  Expected:  real features: the AVE paper's cross-modality localization table (A2V / V2A exact-start
             accuracy on the match test split; not reproduced here, no real features at hand). SYNTHETIC:
             docs/ave.md.
  Evaluate:  python launch/evaluate.py --workdir=./workdir/ave_cmm --split=test

Presets (the string after the colon):
  tiny       a micro run on a few SYNTHETIC clips for one epoch (tests train it).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The cross-modal matching config; `arg` picks a preset (see the module docstring)."""
  common.check_preset(arg, common.PRESETS)
  config = common.get_config()
  config.task = "ave_cmm"
  config.seed = 0
  config.num_epochs = 20
  config.batch_size = 1  # clips (10 segment pairs each)
  config.eval_batch_size = 64
  config.log_every_steps = 500
  config.data.ave.splits = "match"
  config.model.encoder = "cmm"  # the whole two-tower matcher (models/cmm.py)
  config.model.decoder = "dch"  # its own head: the distance
  config.loss.name = "cmm"
  config.loss.cmm_margin = 2.0
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.decay_every_epochs = 0
  config.optimizer.decay_epochs = ()
  config.checkpoint.best_metric = "mean"
  return common.apply_preset(config, arg, common.PRESETS)
