r"""MM-Pyramid + attentive MMIL: the multimodal pyramid attentional encoder (Yu et al., "MM-Pyramid:
Multimodal Pyramid Attentional Network for Audio-Visual Event Localization and Video Parsing", ACM MM 2022)
with HAN's attentive MMIL pooling and loss.

Run card
  Command:   python launch/train.py --config=configs/mmpyr.py [--workdir=./workdir/mmpyr]
             (real features: add --config.data.features_dir=/path/to/llp_features)
  Recipe:    HAN's recipe (Adam 3e-4, x0.1 every 10 epochs, batch 16, 40 epochs) and HAN's loss (video BCE
             + modality BCEs with label smoothing 1.0 / 0.9); MM-Pyramid at the sizes of LEAP's official code:
             4 levels, 8 heads, width 512, dropout 0.2. (The MM-Pyramid paper's own optimiser settings were not
             checked against its code; override them on the command line if they differ.)
  Hardware:  real features: one GPU/TPU core (10,000 training clips, 625 steps per epoch).
             Embedded synthetic data: 2 CPU cores.
  Wall time: real features: see bench/bench_models.py for the measured step time of this CPU.
             Synthetic (default, features_dir empty): not yet measured as a full default run; a short run
             (512 training clips, 3 epochs, 200 validation clips) took 116 s on 2 shared CPU cores.
  Expected:  paper (LLP test, real VGGish / ResNet-152 / R(2+1)D-18 features), percent: see the MM-Pyramid
             paper's AVVP table; reproduce with the command above on real features.
             SYNTHETIC data, that short run (first 200 validation clips, one seed), percent:
               segment: audio 72.3, visual 52.4, Type@AV 58.4; event Type@AV 53.2
  Evaluate:  python launch/evaluate.py --workdir=./workdir/mmpyr --split=test

Presets (the string after the colon):
  tiny       a micro model (1 pyramid level, 2 heads) on a few synthetic clips for one epoch (tests train a
             step with it).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The MM-Pyramid + MMIL config; `arg` picks a preset ("tiny") or None for the full recipe."""
  config = common.get_config()

  # --- top level: HAN's recipe -----------------------------------------------------------------------
  config.seed = 0
  config.num_epochs = 40  # as HAN: 40 epochs
  config.batch_size = 16  # as HAN: 16
  config.eval_batch_size = 64  # padded and masked: every validation/test clip counts exactly once
  # Synthetic data (no features_dir): 2 epochs instead of 40 (see the run card's wall time).
  config.synthetic_num_epochs = 2

  # --- model -----------------------------------------------------------------------------------------
  config.model.encoder = "mmpyramid"  # multimodal pyramid attentional encoder
  config.model.decoder = "mmil"  # attentive multimodal multiple-instance pooling
  config.model.hidden_dim = 512  # as LEAP's official code: 512
  config.model.mmpyramid.num_levels = 4  # pyramid levels (dilations 1, 2, 4, 8)
  config.model.mmpyramid.num_heads = 8  # heads of every attention
  config.model.mmpyramid.dropout = 0.2

  # --- loss ------------------------------------------------------------------------------------------
  config.loss.name = (
      "han"  # video BCE + modality BCEs with label smoothing (individual guided learning)
  )

  # --- optimizer -------------------------------------------------------------------------------------
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-4  # as HAN
  config.optimizer.decay_every_epochs = 10  # StepLR(step_size=10, gamma=0.1), as HAN
  config.optimizer.decay_factor = 0.1

  config = common.apply_preset(config, arg)
  if arg == "tiny":
    config.model.mmpyramid.num_levels = 1  # micro pyramid (one level): compiles fast
    config.model.mmpyramid.num_heads = 2
  return config
