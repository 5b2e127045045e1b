"""The shared base of every run card: data, model, loss, optimizer, evaluation and checkpoint fields.

Each model config (`configs/han.py`, `configs/leap.py`) starts from `get_config()` here and changes only
what its paper changes. Every field is documented where it is set.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config; `arg` is unused here (model configs parse their presets)."""
  del arg
  config = ml_collections.ConfigDict()

  config.seed = 0  # initialisation, dropout and data order all derive from it
  config.num_epochs = 40  # passes over the training split
  config.batch_size = 16  # global training batch, over all devices of all hosts
  config.eval_batch_size = 64  # global evaluation batch; the last one is padded and masked
  config.log_every_steps = 50  # loss/lr/throughput lines and summaries
  config.compute_dtype = "float32"  # "bfloat16" on GPU/TPU: matmuls in bf16, params and loss in float32

  # --- data -----------------------------------------------------------------------------------------
  config.data = ml_collections.ConfigDict()
  # Folder holding the feature subfolders (official layout: vggish/ res152/ r2plus1d_18/). Empty: the
  # embedded LLP-structured *synthetic* dataset, generated from the real annotations.
  config.data.features_dir = ""
  # Folder holding the AVVP_*.csv annotation files. Empty: the real files packaged with avvp_jax.
  config.data.labels_dir = ""
  # "official" (VGGish audio, ResNet-152 frames, R(2+1)D-18 motion) or "clip_clap" (VALOR's CLIP/CLAP).
  config.data.layout = "official"
  # "pooled": frames averaged per second to [10, 2048] at build time (exact for HAN/LEAP, 8x less data);
  # "raw": the [80, 2048] frames as stored.
  config.data.frames = "pooled"
  # Where the TFDS builds live; empty: ~/.cache/avvp_jax/tfds. A build is keyed by its features and
  # labels folders, so other features never reuse a stale build.
  config.data.data_dir = ""
  # Accept annotation copies from before the 2024-04-16 upstream correction (scored as the official
  # code did, dropping the three broken rows). Off: such copies are refused with an explanation.
  config.data.legacy_annotations = False
  # VALOR's segment-level pseudo labels (a file), used by the LEAP loss when given. Empty: none.
  config.data.pseudo_labels = ""
  config.data.shuffle_buffer = 10_000  # training clips shuffled per epoch (LLP train has 10,000)

  # --- model ----------------------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.encoder = "han"  # key of avvp_jax.models.ENCODERS
  config.model.decoder = "mmil"  # key of avvp_jax.models.DECODERS
  # Input feature widths; motion = 0 means no motion stream (the clip_clap layout).
  config.model.input_dims = ml_collections.ConfigDict(dict(audio=128, frames=2048, motion=512))
  config.model.hidden_dim = 512  # width of the embedded segments and of the encoder

  # --- loss -----------------------------------------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.name = "han"  # key of avvp_jax.losses.LOSSES

  # --- optimizer ------------------------------------------------------------------------------------
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.learning_rate = 3e-4  # Adam
  config.optimizer.decay_every_epochs = 10  # step decay: lr x decay_factor every this many epochs
  config.optimizer.decay_factor = 0.1

  # --- checkpoints ----------------------------------------------------------------------------------
  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.every_epochs = 1  # full-state save (params, optimizer, step, data position)

  return config
