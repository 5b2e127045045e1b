r"""HAN: the hybrid attention network with MMIL pooling (Tian, Li and Xu, ECCV 2020).

Run card
  Command:   python launch/train.py --config=configs/han.py [--workdir=./workdir/han]
             (real features: add --config.data.features_dir=/path/to/llp_features)
  Recipe:    Adam 3e-4, x0.1 every 10 epochs, batch 16, 40 epochs, seed 0 (the official main_avvp.py).
  Hardware:  real features: one GPU/TPU core is plenty (10,000 training clips, 625 steps per epoch).
             Embedded synthetic data: 2 CPU cores.
  Wall time: real features, 2 CPU cores (bench/bench_train.py): train step 159 clips/s, 138 clips/s with
             input, so an epoch of 10,000 clips takes ~73 s (extrapolated from 30 steps) and 40 epochs ~50 min.
             Synthetic (default, features_dir empty): 2 min 8 s on 2 shared CPU cores (measured, 38 s of it
             the first-time dataset build; 500 steps at ~130 clips/s, validation ~1 s per epoch).
  Expected:  paper (LLP test, real VGGish / ResNet-152 / R(2+1)D-18 features), percent:
               segment: audio 60.1, visual 52.9, audio-visual 48.9, Type@AV 54.0, Event@AV 55.4
               event:   audio 51.3, visual 48.9, audio-visual 43.0, Type@AV 47.7, Event@AV 48.0
             SYNTHETIC data, default run (4 epochs of 2,000 clips; validation, 649 clips), percent:
               segment: audio 80.09, visual 60.34, audio-visual 56.50, Type@AV 65.65, Event@AV 71.77
               event:   audio 72.40, visual 56.48, audio-visual 50.01, Type@AV 59.63, Event@AV 66.27
             (these measure the code path, not the paper: the synthetic features are easier than real ones).
             Five seeds (--config.num_seeds=5, one process, 4 min 24 s): validation segment Type@AV
             65.75 ± 0.89, test 65.81 ± 0.67, the seed ensemble 66.41 on test (docs/results.md).
  Evaluate:  python launch/evaluate.py --workdir=./workdir/han --split=test

Presets (the string after the colon):
  tiny       a micro model on a few synthetic clips for one epoch (tests train a step with it).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The HAN config; `arg` picks a preset ("tiny") or None for the paper recipe."""
  config = common.get_config()

  # --- top level: the paper's recipe -----------------------------------------------------------------
  config.seed = 0
  config.num_epochs = 40  # official: 40 epochs
  config.batch_size = 16  # official: 16
  config.eval_batch_size = 64  # padded and masked: every validation/test clip counts exactly once
  # SYNTHETIC data (no features_dir): 4 epochs instead of 40, on data.synthetic_train_clips = 2,000 clips
  # (the run card's wall time); real features get the full recipe.
  config.synthetic_num_epochs = 4

  # --- model -----------------------------------------------------------------------------------------
  config.model.encoder = "han"  # hybrid attention network: self- and cross-modal attention
  config.model.decoder = "mmil"  # attentive multimodal multiple-instance pooling
  config.model.hidden_dim = 512  # official: 512
  config.model.han.num_layers = 1  # official: one HAN layer, shared by both modalities
  config.model.han.num_heads = 1  # official: one attention head

  # --- loss ------------------------------------------------------------------------------------------
  config.loss.name = (
      "han"  # video BCE + modality BCEs with label smoothing (individual guided learning)
  )

  # --- optimizer -------------------------------------------------------------------------------------
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-4  # official: 3e-4
  config.optimizer.decay_every_epochs = 10  # official StepLR(step_size=10, gamma=0.1)
  config.optimizer.decay_factor = 0.1

  return common.apply_preset(config, arg)
