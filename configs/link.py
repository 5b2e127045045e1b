r"""LINK: adaptive modality interaction (Wang, Zhu, Chen and Wang, "LINK: Adaptive Modality Interaction for
Audio-Visual Video Parsing", arXiv 2412.20872): TSAM -> CMIM -> HAN -> PLSIM -> attentive MMIL, with S-LOSS.

Run card
  Command:   python launch/train.py --config=configs/link.py [--workdir=./workdir/link]
             (real features: add --config.data.features_dir=/path/to/llp_features; the paper trains with
             VALOR's CLAP/CLIP pseudo labels: --config.data.pseudo_labels=/path/to/valor)
  Recipe:    HAN's (Adam 3e-4, x0.1 every 10 epochs, batch 16, 40 epochs; the paper's optimiser settings were
             not available as code): LINK = the HAN encoder and MMIL pooling with TSAM, CMIM and PLSIM added,
             trained with L_basic + S-LOSS (weight 1).
  Ablation:  switch parts off with --config.model.link.tsam=False, --config.model.link.cmim=False,
             --config.model.refiner=none (no PLSIM) and --config.loss.link_similarity=off (or =plain for
             LEAP's unweighted avss loss). Reading choices where the paper is ambiguous:
             --config.model.link.tsam_temporal_mlp=per_segment, --config.model.link.tsam_spatial=mlp, and
             --config.model.plsim.{audio,visual}_label_embeddings=/path/clap_or_clip_text.npy.
  Pseudo labels for PLSIM: VALOR's when the trainer passes them to the model, else the model's own segment
             predictions (gated by the weak labels in training when the trainer passes those); see
             avvp_jax/models/link.py.
  Hardware:  real features: one GPU/TPU core (10,000 training clips, 625 steps per epoch).
             Embedded synthetic data: 2 CPU cores.
  Wall time: real features: see bench/bench_models.py for the measured step time of this CPU.
             Synthetic (default, features_dir empty): not yet measured as a full default run; a short run
             (512 training clips, 3 epochs, 200 validation clips) took 51 s on 2 shared CPU cores.
  Expected:  paper (LLP test, real features with CLAP/CLIP pseudo labels and text encoders), percent: see
             Table 1 of the paper; avvp_jax's packaged MiniLM text embeddings replace CLIP/CLAP by default.
             SYNTHETIC data, that short run (first 200 validation clips, one seed), percent:
               segment: audio 60.1, visual 31.9, Type@AV 41.6; event Type@AV 31.1
  Evaluate:  python launch/evaluate.py --workdir=./workdir/link --split=test

Presets (the string after the colon):
  tiny       a micro model on a few synthetic clips for one epoch (tests train a step with it).
"""

import ml_collections

from configs import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The LINK config; `arg` picks a preset ("tiny") or None for the full recipe."""
  config = common.get_config()

  # --- top level: HAN's recipe -----------------------------------------------------------------------
  config.seed = 0
  config.num_epochs = 40  # as HAN: 40 epochs
  config.batch_size = 16  # as HAN: 16
  config.eval_batch_size = 64  # padded and masked: every validation/test clip counts exactly once
  # Synthetic data (no features_dir): 4 epochs instead of 40 (see the run card's wall time).
  config.synthetic_num_epochs = 4

  # --- model -----------------------------------------------------------------------------------------
  config.model.encoder = "link"  # TSAM -> CMIM -> HAN (config.model.han), and S-LOSS's mu
  config.model.decoder = "mmil"  # attentive multimodal multiple-instance pooling
  config.model.refiner = (
      "plsim"  # PLSIM (config.model.plsim) between encoder and decoder; "none": without
  )
  config.model.hidden_dim = 512  # as HAN: 512
  config.model.han.num_layers = 1  # as HAN: one layer, one head
  config.model.han.num_heads = 1
  config.model.link.tsam = True  # ablation switches: each part of LINK can be turned off
  config.model.link.cmim = True

  # --- loss ------------------------------------------------------------------------------------------
  config.loss.name = "link"  # L_basic (video, modality, pseudo-label BCEs) + S-LOSS
  config.loss.link_similarity = "weighted"  # S-LOSS; "plain": LEAP's avss loss; "off": none
  config.loss.avss_weight = 1.0  # weight of S-LOSS
  config.loss.link_first_pass_weight = (
      1.0  # trains the un-modulated pass that gives PLSIM's test labels
  )
  # The recipe the run card's figures were measured with: no segment pseudo labels (video-level targets the
  # smoothed weak labels, no segment BCE, the similarity target from the model's own predictions). With
  # pseudo labels (--config.data.pseudo_labels=DIR, or =simulated on the synthetic data) turn these on.
  config.loss.audio_pseudo_labels = False
  config.loss.visual_pseudo_labels = False
  config.loss.audio_segment_loss = False
  config.loss.visual_segment_loss = False
  config.loss.avss_from_pseudo_labels = False

  # --- optimizer -------------------------------------------------------------------------------------
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-4  # as HAN
  config.optimizer.decay_every_epochs = 10  # StepLR(step_size=10, gamma=0.1), as HAN
  config.optimizer.decay_factor = 0.1

  return common.apply_preset(config, arg)
