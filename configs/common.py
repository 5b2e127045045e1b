"""The shared base of every run card: data, model, loss, optimizer, evaluation and checkpoint fields.

Each model config (`configs/han.py`, `configs/leap.py`) starts from `get_config()` here and changes only
what its paper changes. Every field is documented where it is set.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The base config; `arg` is unused here (model configs parse their presets)."""
  del arg
  config = ml_collections.ConfigDict()

  # The task family (avvp_jax/tasks/): "llp", audio-visual video parsing on LLP; or the dotted path of a
  # module of one's own that defines TASK (an avvp_jax.task.Task).
  config.task = "llp"
  config.seed = 0  # initialisation, dropout and data order all derive from it
  # Independent replicas trained side by side in one jitted program, with seeds seed, ..., seed + N - 1:
  # replica s is the run `--config.seed=s` would train alone. Every metric is then reported as mean ± std
  # over the seeds, and evaluation adds the seed ensemble (see avvp_jax/train.py).
  config.num_seeds = 1
  config.num_epochs = 40  # passes over the training split (real features)
  # The reduced recipe of the embedded synthetic data (`data.features_dir` empty): the three fields
  # below replace num_epochs, optimizer.learning_rate and model.leap.label_embeddings there, so that
  # a default run finishes on 2 CPU cores in minutes. A value given on the command line wins: e.g.
  # `--config.num_epochs=1` switches synthetic_num_epochs off (avvp_jax.cli.explicit_over_recipe; in
  # Python, set the replacement to 0 / "" yourself).
  # Passes over the training split on the synthetic data. 0: use `num_epochs`.
  config.synthetic_num_epochs = 0
  # Peak learning rate on the synthetic data. 0: optimizer.learning_rate.
  config.synthetic_learning_rate = 0.0
  # LEAP's model.leap.label_embeddings on the synthetic data, in place of the "packaged" default
  # only (any other table given is kept); recorded as such in the workdir's config.json, so
  # evaluation and parsing rebuild the same model. Empty: model.leap.label_embeddings.
  config.synthetic_label_embeddings = ""
  config.batch_size = 16  # global training batch, over all devices of all hosts
  config.eval_batch_size = 64  # global evaluation batch; the last one is padded and masked
  # LLP: per-class segment thresholds at evaluation instead of the official 0.5: a folder with UWAV's
  # a_/v_classwise_threhsolds.npy (logits; e.g. make_pseudo_labels.py --uwav's OUT/UWAV) or a .npz of audio /
  # visual [25] probabilities (avvp_jax/tasks/llp/evaluator.py). Empty: official. Named in the eval reports.
  config.eval_thresholds = ""
  config.log_every_steps = (
      50  # loss/lr/throughput lines and summaries (device metrics fetched only then)
  )
  config.eval_every_epochs = (
      1  # validation (all 10 metrics) every this many epochs, and after the last
  )
  config.compute_dtype = (
      "float32"  # "bfloat16" on GPU/TPU: matmuls in bf16, params and loss in float32
  )
  # Test machinery (`avvp_jax.faults`), off (0 / -1) in every real run.
  config.debug = ml_collections.ConfigDict()
  # After this many training steps: wait for pending checkpoint writes, then SIGKILL the own process
  # (simulates a crash; the resume test uses it). 0: never.
  config.debug.kill_after_steps = 0
  # After this many training steps: send `signal` ("SIGTERM" or "SIGINT") to the own process, as a pod's
  # preemption or a Ctrl-C would (the clean-stop tests use it). 0: never.
  config.debug.signal_after_steps = 0
  config.debug.signal = "SIGTERM"
  # Replace the training loss by NaN at this step (0-based) to exercise the non-finite stop. -1: never.
  config.debug.nan_loss_at_step = -1
  # A jax.profiler trace of `num_steps` training steps from step `first_step` on, written to WORKDIR/profile
  # (TensorBoard's profile plugin or Perfetto read it). 0 steps: no trace.
  config.profile = ml_collections.ConfigDict()
  config.profile.first_step = 10
  config.profile.num_steps = 0

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
  # VALOR's segment-level pseudo labels, used by the LEAP loss when given: the folder where VALOR's
  # CLAP.zip and CLIP.zip were unpacked (CLAP/segment_pseudo_labels/<clip id>.npy and
  # CLIP/segment_pseudo_labels/<clip id>.npy, [10, 25] each; see avvp_jax/tasks/llp/pseudo_labels.py).
  # Empty: none.
  # "simulated": on the embedded synthetic data only, SIMULATED VALOR-like pseudo labels made from the set's
  # hidden dense labels (avvp_jax/tasks/llp/synthetic.py; official segment F1 audio 80.5, visual 71.0).
  config.data.pseudo_labels = ""
  # Modality-level video labels for training (MA's refined labels, the stage 3 of configs/ma.py): a folder
  # written by launch/refine_labels.py (its refined_labels.npz), such a .npz, or a file in MA's
  # need_to_change.pkl layout (per modality, per class, the training-split rows whose label is dropped; e.g.
  # CVCM's release). Read by the "ma" and "cvcm" losses (avvp_jax/tasks/llp/refined_labels.py). Empty: none.
  config.data.refined_labels = ""
  # Training clips in the shuffle buffer (LLP train has 10,000): the order of an epoch depends only on
  # (seed, epoch), so a resumed run sees exactly the same batches. Decoded clips are held in memory (~105 KB
  # each with pooled frames, ~680 KB raw): lower it for raw frames on small hosts. A buffer that covers the
  # host's training clips keeps them decoded for the whole run (read once; the same batches, faster epochs).
  config.data.shuffle_buffer = 10_000
  # Train on the last, smaller batch of each epoch too (padded and masked), as the official loaders do
  # (PyTorch DataLoader drop_last=False: 313 steps of 32 over LLP's 10,000 clips). False: drop it (312).
  config.data.keep_partial_batch = True
  # Evaluation splits whose padded batches take at most this many MiB on a host are kept in its memory after
  # their first pass, so later validations read no file (LLP val with pooled frames: ~70 MiB; AVE val: ~400
  # MiB). 0: always stream from the build.
  config.data.eval_in_memory_mb = 1024
  # The embedded SYNTHETIC data (`features_dir` empty): training clips (a seeded subset of the 10,000 real
  # ones), the generator's seed, and how many of the first validation / test clips to keep (0: all 649 /
  # 1,200). A build is keyed by these, so changing them builds anew.
  config.data.synthetic_train_clips = 2000
  config.data.synthetic_seed = 0
  config.data.synthetic_eval_clips = 0
  # AVE (config.task = "ave", avvp_jax/tasks/ave/): its own fields; features_dir (empty: the embedded SYNTHETIC
  # AVE set), data_dir, shuffle_buffer, keep_partial_batch and synthetic_seed above serve it too. A visual map is
  # 1 MB a clip in float32: the shuffle buffer holds that much per clip (3,339 training clips: 3.3 GB).
  config.data.ave = ml_collections.ConfigDict()
  # "full": segment labels in training (the supervised setting); "weak": training sees the video labels only,
  # plus the 178 background-only videos (*_noisy.h5 in features_dir) appended to train, as AVE and CMBS do.
  config.data.ave.supervision = "full"
  # Folder of Annotations.txt and {train,val,test}_order.h5. Empty: the copies packaged with avvp_jax.
  config.data.ave.labels_dir = ""
  # The SYNTHETIC AVE set: training clips (a seeded subset of the 3,339 training rows) and how many of the
  # first val / test rows to keep (0: all 402). Its build is keyed by these.
  config.data.ave.synthetic_train_clips = 800
  config.data.ave.synthetic_eval_clips = 0
  # Weak setting only, never by default: PSP's prob_label.h5 ([4143, 29], the share of event and background
  # segments of each video) as the training batches' `prob_label`, which PSP's weak loss reads. It leaks each
  # event's duration into weak training (more than video labels). Empty: none.
  config.data.ave.prob_labels = ""
  # The split set: "standard" ({train,val,test}_order.h5, event localization's) or "match"
  # ({train,val,test}_order_match.h5, the cross-modality localization task's, config.task "ave_cmm").
  config.data.ave.splits = "standard"

  # --- model ----------------------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.encoder = "han"  # key of avvp_jax.models.ENCODERS
  config.model.decoder = "mmil"  # key of avvp_jax.models.DECODERS
  # Key of avvp_jax.models.REFINERS: "none", or "plsim" (LINK's PLSIM before the decoder, config.model.plsim).
  config.model.refiner = "none"
  # Each section below holds exactly the attributes of one module, which is built by splatting it
  # (`HANEncoder(**config.model.han)`, see avvp_jax/models/__init__.py): a key that is no attribute is an error.
  # Input feature widths (InputEmbedding's); motion = 0 means no motion stream (the clip_clap layout).
  # These are the official layout's; with another data.layout and all three left as they are, the
  # run takes that layout's widths (clip_clap: audio 768, frames 768, motion 0; state.resolve_config).
  config.model.input_dims = ml_collections.ConfigDict(dict(audio=128, frames=2048, motion=512))
  # Event localizers (the AVE task; encoder "ave", "psp" or "cmbs" with decoder "dch"), their official
  # sizes; the supervised or weak network follows config.data.ave.supervision.
  # AVE-ECCV18: "concat" (A+V-att) or "dmrn" fusion; audio-guided attention width; LSTM width; DMRN blocks.
  config.model.ave = ml_collections.ConfigDict(
      dict(fusion="concat", hidden_dim=128, hidden_size=512, num_blocks=1)
  )
  # PSP: pruning threshold (None: official, 0.099 supervised / 0.095 weak), width, dropout.
  config.model.psp = ml_collections.ConfigDict(dict(threshold=None, hidden_dim=128, dropout=0.1))
  # CMBS, supervised (configs/main.json of marmot-xy/CMBS) and weak (configs/weak.json).
  config.model.cmbs = ml_collections.ConfigDict(
      dict(alpha=0.1, gamma=0.3, beta=0.4, d_model=256, top_k=4, dropout=0.2)
  )
  config.model.cmbs_weak = ml_collections.ConfigDict(
      dict(
          alpha=0.2,
          gamma=0.5,
          beta=0.5,
          d_model=256,
          top_k=4,
          dropout=0.1,
          every_segment_foreground=True,
      )
  )
  # AVE's cross-modal matcher (encoder "cmm", config.task "ave_cmm"; AVE-ECCV18 cmm_train.py): each tower's
  # Dense widths, the LeakyReLU slope (Keras alpha) and the floor of the squared distance (Keras K.epsilon()).
  config.model.cmm = ml_collections.ConfigDict(
      dict(hidden_dim=128, embed_dim=64, negative_slope=0.3, epsilon=1e-7)
  )
  # LEAP as the head of an AVE localizer (encoder ave/psp/cmbs with decoder "leap"; models/localizer_leap.py;
  # LEAP's own fields are config.model.leap's). streams: "modality" (LEAP's audio / visual branches read the
  # localizer's audio / visual streams) or "fused" (both read the stream its official head reads); background:
  # "threshold" (28 event queries, background below `threshold`) or "query" (a 29th, background query);
  # combine: "mean" or "product" of the two branches' probabilities; decision: "segment" (each segment's best
  # class) or "video" (the video's one class, or background, on every segment). logit_scale: the factor on
  # LEAP's segment logits (1: LEAP's own), learned from there with learn_logit_scale.
  config.model.localizer_leap = ml_collections.ConfigDict(
      dict(
          streams="modality",
          background="threshold",
          combine="mean",
          decision="segment",
          threshold=0.5,
          logit_scale=1.0,
          learn_logit_scale=False,
      )
  )
  config.model.hidden_dim = 512  # width of the embedded segments and of the encoder
  # HAN encoder (avvp_jax/models/han.py); defaults are the official model's (YapengTian/AVVP-ECCV20).
  config.model.han = ml_collections.ConfigDict()
  config.model.han.num_layers = 1
  config.model.han.num_heads = 1
  config.model.han.ffn_dim = (
      0  # feed-forward hidden width; 0: the input width, hidden_dim (official 512)
  )
  config.model.han.dropout = (
      0.1  # on the attention outputs, inside and after the feed-forward block
  )
  config.model.han.attention_dropout = 0.1  # on the attention weights
  # "official": every layer reads the embedded inputs, so only the last layer counts (parity);
  # "stacked": each layer reads the previous layer's output (JoMoLD); "sequential": stacked, and the visual
  # update attends to the audio its own layer has just updated (VALOR's encoder).
  config.model.han.stacking = "official"
  config.model.han.share_modalities = (
      True  # official: the same layer weights update audio and visual
  )
  # Cross-modal attention in every layer (official); False: self-attention only (JoMoLD's noise estimator).
  config.model.han.cross_attention = True
  # MMIL decoder (avvp_jax/models/mmil.py); its class count is the task's (LLP: 25).
  config.model.mmil = ml_collections.ConfigDict()
  # Dropout on the encoded visual segments before the pooling, in training (official 0; JoMoLD 0.5).
  config.model.mmil.visual_dropout = 0.0
  # Which video-level probabilities gate segment predictions at evaluation: "union" (official: the
  # whole-video prediction for both modalities) or "modality" (each its own: JoMoLD's and MA's evaluation).
  config.model.mmil.filter = "union"
  # Segment scores from CVCM's class-token co-occurrence head (avvp_jax/models/cvcm.py) with tokens of this
  # width instead of fc_prob (CVCM: --occ_dim 128); 0: fc_prob (HAN). Its dropout (CVCM: --prob_drop_occ 0.25).
  config.model.mmil.class_token_dim = 0
  config.model.mmil.class_token_dropout = 0.25
  # LEAP decoder (avvp_jax/models/leap.py); defaults are the official code's (jasongief/LEAP).
  config.model.leap = ml_collections.ConfigDict()
  config.model.leap.num_blocks = 2  # N label-to-segment blocks per modality
  config.model.leap.num_heads = 8
  config.model.leap.ffn_dim = (
      0  # feed-forward hidden width; 0: the input width, hidden_dim (official 512)
  )
  config.model.leap.dropout = 0.2  # on the sublayer outputs and inside the feed-forward block
  config.model.leap.attention_dropout = 0.1  # on the attention weights
  # "official": pre-norm sublayers, segment logits from a second attention pass of the updated queries
  # (the released code behind the paper's numbers); "paper": post-norm, logits of the block's own pass.
  config.model.leap.variant = "official"
  # Class-name embeddings: "packaged" (all-MiniLM-L6-v2 sentence embeddings of the class names, [25, 384],
  # shipped with avvp_jax), "learned" (a trainable table), a [25, D] .npy path, or a GloVe text file path
  # (the paper: glove.6B.300d.txt; multi-word names average their words' vectors).
  config.model.leap.label_embeddings = "packaged"
  config.model.leap.learned_label_dim = 384  # width of the "learned" table
  # Which video-level probabilities gate segment predictions: "union" (official: the thresholded audio OR
  # visual prediction, for both modalities) or "modality" (each modality its own).
  config.model.leap.filter = "union"
  # MM-Pyramid encoder (avvp_jax/models/mmpyramid.py); defaults are the official LEAP code's (jasongief/LEAP).
  config.model.mmpyramid = ml_collections.ConfigDict()
  config.model.mmpyramid.num_levels = 4  # pyramid levels L; level i has dilation 2^i
  config.model.mmpyramid.num_heads = 8  # heads of every attention (official --mmp_head 8)
  config.model.mmpyramid.ffn_dim = (
      0  # feed-forward hidden width; 0: the input width, hidden_dim (official 512)
  )
  config.model.mmpyramid.dropout = 0.2  # on the sublayer outputs and inside the feed-forward blocks
  config.model.mmpyramid.attention_dropout = 0.1  # on the attention weights
  config.model.mmpyramid.kernel_size = 3  # of the dilated temporal convolutions
  config.model.mmpyramid.windowed = (
      True  # level i attends within +-2^i segments (official); False: all
  )
  # LINK encoder (avvp_jax/models/link.py `LINKEncoder`): TSAM -> CMIM -> HAN (built from config.model.han).
  config.model.link = ml_collections.ConfigDict()
  config.model.link.tsam = True  # temporal-spatial attention per modality (eq. 1-3); False: skipped
  config.model.link.cmim = (
      True  # cross-modal interaction with learnable alpha/beta (eq. 4-6); False: skipped
  )
  # TSAM's temporal MLP: "across_time" (the T pooled values -> hidden -> T weights, CBAM's channel attention with
  # segments as channels) or "per_segment" (1 -> hidden -> 1 on each segment's pooled values, no mixing).
  config.model.link.tsam_temporal_mlp = "across_time"
  config.model.link.tsam_temporal_hidden = 0  # hidden width of that MLP; 0: T ("across_time") or 4
  # TSAM's spatial (channel) attention: "pool" (sigmoid(mean_t + max_t), the paper's form) or "mlp" (a shared
  # D -> D/4 -> D MLP on both pooled maps first, as CBAM's channel attention).
  config.model.link.tsam_spatial = "pool"
  config.model.link.cmim_alpha_init = 0.0  # initial alpha1, alpha2 (beta1, beta2 start at 1)
  config.model.link.mu_init = 0.0  # initial mu of S-LOSS's eq. 11 weight (a model parameter)
  # LINK's PLSIM (avvp_jax/models/link.py `PLSIM`), the pseudo-label FiLM of the segments before the decoder
  # (eq. 13-17); used when config.model.refiner = "plsim".
  config.model.plsim = ml_collections.ConfigDict()
  # Class-name text embeddings per modality: "packaged" (MiniLM, shipped) or a [25, L] .npy (the paper: CLAP
  # "This is a sound of ..." for audio, CLIP "A photo of ..." for visual).
  config.model.plsim.audio_label_embeddings = "packaged"
  config.model.plsim.visual_label_embeddings = "packaged"
  config.model.plsim.hidden_dim = (
      0  # hidden width of PLSIM's four MLPs; 0: the segments' width, hidden_dim
  )
  config.model.plsim.threshold = 0.5  # own segment predictions >= this are PLSIM's labels
  # In training, keep the own-prediction labels only for the clip's weak-label classes (when the trainer passes
  # them); at test time the own predictions are used ungated.
  config.model.plsim.train_gate = True

  # --- loss -----------------------------------------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.name = "han"  # key of avvp_jax.tasks.llp.losses.LOSSES
  # Probabilities are clamped to [clamp_eps, 1 - clamp_eps] before the BCEs (both official codes).
  config.loss.clamp_eps = 1e-7
  # Label smoothing toward 0.5 of the audio / visual video-level targets, s * y + (1 - s) * 0.5: HAN's
  # individual guided learning, and LEAP's targets when no pseudo labels are given (official 1.0 / 0.9).
  config.loss.audio_smoothing = 1.0  # s_a (official 1.0: no smoothing)
  config.loss.visual_smoothing = 0.9  # s_v (official 0.9)
  # LEAP and LINK. What the segment pseudo labels (config.data.pseudo_labels) feed: the official LEAP flags,
  # independent of each other (jasongief/LEAP main_leap.py; its run script turns every one on).
  # Video-level target of a modality = max over time of its pseudo labels, and its segment target = the pseudo
  # labels (--a_pseudo_flag / --v_pseudo_flag); False: the smoothed weak label and its per-second copy.
  config.loss.audio_pseudo_labels = True
  config.loss.visual_pseudo_labels = True
  # The segment-level BCEs (--temporal_a_loss_flag / --temporal_v_loss_flag), weighted by segment_weight.
  config.loss.audio_segment_loss = True
  config.loss.visual_segment_loss = True
  # The avss target from the pseudo labels (--use_pseudo_label); False: from the model's own thresholded
  # segment predictions, kept where its video-level probability is >= 0.5.
  config.loss.avss_from_pseudo_labels = True
  config.loss.segment_weight = 1.0  # weight of the segment-level BCEs (official run script: 1)
  # AVE with the LEAP head only (tasks/ave/losses/leap.py): the segment term, "bce" (per branch, LEAP's) or "ce"
  # (softmax over the queries of the branches' mean logit).
  config.loss.ave_leap_segment_loss = "bce"
  # LEAP only. Weight of the audio-visual semantic similarity (avss) loss, and its EIoU target:
  # "official" (the released code: x / (1 + x) + avss_eps, x = shared events / most events in a
  # segment) or "paper" (per-pair event IoU). Official run card: weights 1, eps 0.01.
  config.loss.avss_weight = 1.0  # lambda of L = L_basic + lambda * L_avss (official run script: 1)
  config.loss.avss_target = "official"  # "official" | "paper"
  config.loss.avss_eps = 0.01  # added to the "official" target (official run script: 0.01)
  # LINK only. The similarity term (weight avss_weight): "weighted" (S-LOSS, eq. 11 weights with the model's
  # learnable mu), "plain" (LEAP's avss loss) or "off" (the paper's ablation without S-LOSS).
  config.loss.link_similarity = "weighted"
  # LINK with PLSIM only. Weight of the video-level BCEs of the un-modulated first pass (its segment
  # predictions are PLSIM's labels at test time); 0: not trained directly.
  config.loss.link_first_pass_weight = 1.0
  # AVE's cross-modal matcher only (loss "cmm"): the contrastive loss's margin (cmm_train.py: 2.0).
  config.loss.cmm_margin = 2.0
  # JoMoLD only (MCG-NJU/JoMoLD main.py; avvp_jax/tasks/llp/denoising.py). Weights of the terms
  # audio_weight * BCE(p_a, Pa) + visual_weight * BCE(p_v, Pv) + video_weight * BCE(p, y) + nce_weight * NCE.
  config.loss.audio_weight = 1.0  # official --audio_weight 2 in stage 3; 1 in the noise estimator
  config.loss.visual_weight = 1.0  # official --visual_weight 1
  config.loss.video_weight = 1.0  # official --video_weight 1
  config.loss.nce_weight = 1.0  # official --nce_weight 1
  # The label-smoothed NCE of each audio segment against the 10 visual segments of its clip (HAN outputs,
  # cosine / temperature): official --temperature 0.2, --nce_smooth 0.1.
  config.loss.nce_temperature = 0.2
  config.loss.nce_smoothing = 0.1
  # Joint modality label denoising (stage 3): drop per batch and class the modality labels that the
  # student's own no-cross-attention forward flags, at the per-class ratios of `noise_ratios` (an .npz with
  # `audio` and `visual`, 25 floats each: launch/make_noise_ratios.py writes one, JoMoLD's release is one).
  config.loss.denoise = False
  config.loss.noise_ratios = ""
  # How the ratios start: "official" (the released code: no denoising in the first epoch, full ratios
  # after, for warm-up epochs below 1), "linear" (the intended ramp: ratio x min(1, step / (warm-up epochs
  # x steps per epoch))) or "none" (full ratios from the first step).
  config.loss.denoise_warm_up = "official"
  config.loss.denoise_warm_up_epochs = 0.9  # official --warm_up_epoch 0.9
  # MA only (loss "ma", configs/ma.py). Weight, temperature and label smoothing of the audio-visual contrastive
  # term (encoded audio segments against the visual segments before the encoder; official 1, 0.2, 0.1).
  config.loss.ma_contrastive_weight = 1.0
  config.loss.ma_temperature = 0.2
  config.loss.ma_smoothing = 0.1
  # With refined labels: a dropped audio label also clears the video-level target (the official loader's
  # quirk: its audio target aliases the video label). False: the video target stays the weak label (the "cvcm"
  # loss: the OR of the modality labels, CVCM's; configs/cvcm.py sets False).
  config.loss.ma_drop_clears_video = True
  # CVCM only (loss "cvcm", configs/cvcm.py; GenjiB/CM-Co-Occurrence-AVVP run.sh). The cross-video contrastive
  # term's weight (--delta 0.85) and temperature (--tmp 1); the warm-up epochs without it (--init_epoch 2), in
  # which the audio / visual smoothing are these (--before_audio_smoothing 1, --before_vis_smoothing 0.9;
  # after them: audio_smoothing / visual_smoothing); and the cross-video pairs, each clip's audio with another
  # clip's visual streams as extra rows of the batch (--augment 1; avvp_jax/tasks/llp/cvcm_mix.py).
  config.loss.cvcm_weight = 0.85
  config.loss.cvcm_temperature = 1.0
  config.loss.cvcm_warm_up_epochs = 2
  config.loss.cvcm_warm_up_audio_smoothing = 1.0
  config.loss.cvcm_warm_up_visual_smoothing = 0.9
  config.loss.cvcm_mix = True
  # UWAV only (loss "uwav", configs/uwav.py; avvp_jax/tasks/llp/uwav.py). Soft segment targets from the
  # teacher's logits (official --apply_uncertainty) and in the mixup term (--apply_uncertainty_mixup); False:
  # the hard segment labels.
  config.loss.uwav_soft_targets = True
  config.loss.uwav_soft_mixup = True
  # Segment-loss weights: "inverse_freq" (official --reweight_type inverse_freq), "fixed" or "off".
  config.loss.uwav_reweight = "inverse_freq"
  config.loss.uwav_positive_weight = 0.5  # official --pos_weight (LLP script 0.5)
  config.loss.uwav_negative_weight = 1.0  # official --neg_weight ("fixed" only)
  config.loss.uwav_mixup_weight = 1.0  # official --mixup_loss_weight; 0: no mixup term
  config.loss.uwav_mixup_alpha = (
      1.7  # lambda ~ Beta(alpha, alpha) (official LLP script --alpha 1.7)
  )

  # --- optimizer ------------------------------------------------------------------------------------
  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # "adam" (both papers), "adamw", or "sgd" (plain; tests)
  config.optimizer.learning_rate = 3e-4  # peak (initial) learning rate
  # Step decay as PyTorch's StepLR stepped per epoch: lr x decay_factor every this many epochs; 0: constant.
  config.optimizer.decay_every_epochs = 10
  config.optimizer.decay_factor = 0.1  # the StepLR gamma
  # PyTorch's MultiStepLR stepped per epoch: lr x decay_factor after each of these epochs (e.g. (60, 120));
  # when given, it replaces decay_every_epochs.
  config.optimizer.decay_epochs = ()
  # The learning rate per epoch: "step" (the StepLR / MultiStepLR fields above) or "warmup_cosine" (VALOR's
  # lr_warm_up_cos_anneal: epoch e/warmup_epochs x peak for e < warmup_epochs, then a cosine from the peak
  # down to learning_rate / final_lr_divisor at the run's last epoch; see avvp_jax/state.py).
  config.optimizer.schedule = "step"
  config.optimizer.warmup_epochs = 0  # warmup_cosine only: epochs of linear warm-up (VALOR: 10)
  # warmup_cosine only: the last epoch's learning rate is the peak / this.
  config.optimizer.final_lr_divisor = 100.0
  # Adam's moment decays and epsilon (adam and adamw; PyTorch's and optax's defaults; VALOR: b1 0.5).
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.eps = 1e-8
  config.optimizer.weight_decay = 0.0  # decoupled weight decay (adamw only)
  config.optimizer.grad_clip_norm = 0.0  # clip the global gradient norm to this; 0: no clipping

  # --- checkpoints ----------------------------------------------------------------------------------
  config.checkpoint = ml_collections.ConfigDict()
  # Full-state save (params, optimizer state, step, data position) into WORKDIR/checkpoints every this many
  # epochs, and after the last one. A run restarted on the same workdir resumes from the latest save.
  config.checkpoint.every_epochs = 1
  # Also save every this many steps inside an epoch (resume then skips the batches already seen); 0: never.
  config.checkpoint.every_steps = 0
  config.checkpoint.keep = 1  # latest saves kept in WORKDIR/checkpoints
  # Validation metric that selects the separate full-state "best" save in WORKDIR/best (higher is better).
  config.checkpoint.best_metric = "segment/type"
  # How a tie with the best so far counts: ">=" (the later epoch becomes the best, as HAN's official code)
  # or ">" (strict: the first best is kept, as VALOR's); "last": every validation replaces it, so the "best"
  # save is the last epoch's (MA's official code keeps the last epoch).
  config.checkpoint.best_rule = ">="
  # More evaluations at every validation, beside "val" (which ranks the epochs): {name: {split, type}}, the
  # task's default evaluator unless `type` names another. Entries are added in a config file (a locked config
  # takes no new keys on the command line), e.g. `config.evals.test = dict(split="test")` to follow the test
  # split along the run (the papers that select on it; this project selects on validation).
  config.evals = ml_collections.ConfigDict()
  # After training, launch/train.py scores each replica's best state (and a multi-seed run's ensemble) on
  # this split and writes WORKDIR/eval_<split>.json, as launch/evaluate.py does (no second start-up; the
  # compilation cache serves the evaluation step); "": no final report.
  config.final_report = "test"

  return config


PRESETS = ("tiny",)
# The AVE run cards' presets: the weak setting, and the micro runs of either setting.
AVE_PRESETS = ("tiny", "weak", "weak_tiny")


def check_preset(arg: str | None, presets: tuple[str, ...] = PRESETS) -> None:
  """Raises ValueError for a preset name the run card does not have (None: the full recipe)."""
  if arg and arg not in presets:
    valid = ", ".join(f":{name}" for name in presets)
    raise ValueError(
        f"unknown preset {arg!r}: the presets are {valid} (or none, the full recipe); see the "
        "config's docstring, 'Presets'."
    )


def apply_preset(
    config: ml_collections.ConfigDict, arg: str | None, presets: tuple[str, ...] = PRESETS
) -> ml_collections.ConfigDict:
  """Applies the preset named after the colon of `--config=configs/X.py:PRESET` (None: the full recipe).

  tiny: a micro model on a few synthetic clips for one epoch, batch 8 (divisible by 1, 2, 4 and 8
        devices), logging every step. Tests train a step with it; it finishes in seconds on a CPU.
  (The AVE run cards' weak presets are theirs; `tiny` and `weak_tiny` end here.)
  """
  check_preset(arg, presets)
  if arg and arg.endswith("tiny") and config.task in ("ave", "ave_cmm"):
    config.num_epochs = 1
    config.synthetic_num_epochs = 1
    config.batch_size = 8
    config.eval_batch_size = 16
    config.log_every_steps = 1
    config.data.ave.synthetic_train_clips = 16  # 2 steps per epoch
    config.data.ave.synthetic_eval_clips = (
        20  # the first 20 val / test rows: a full and a padded batch
    )
    return config
  if arg == "tiny":
    config.num_epochs = 1
    config.synthetic_num_epochs = 1
    config.batch_size = 8
    config.eval_batch_size = 16
    config.log_every_steps = 1
    # A micro model: every width 16, one LEAP block of 2 heads (only in a section the model reads: a
    # changed field elsewhere would warn). Its compilation, not its arithmetic, is what a test waits for.
    config.model.hidden_dim = 16
    if config.model.decoder == "leap":
      config.model.leap.num_heads = 2
      config.model.leap.num_blocks = 1
    config.data.synthetic_train_clips = 64  # 8 steps per epoch
    config.data.synthetic_eval_clips = (
        40  # the first 40 val / test clips: 2 full batches and a padded one
    )
  return config
