"""The batch contract: the keys of a batch dict and what each holds.

The input pipeline (`avvp_jax.tasks.llp.pipeline`) yields batches as dicts of numpy arrays; the trainer, the
losses (`avvp_jax.tasks.llp.losses`) and the evaluator read them by these names. B clips, T = 10 one-second segments,
C = 25 classes (`avvp_jax.tasks.llp.annotations`); float32 unless said otherwise.

  audio                 [B, T, Da]   audio features (Da: 128 VGGish official, 768 CLAP clip_clap)
  frames                [B, T, Df]   frame features, pooled per second (Df: 2048 ResNet-152, 768 CLIP), or
                        [B, 8T, Df]  the raw official frames (`config.data.frames="raw"`)
  motion                [B, T, 512]  R(2+1)D-18 motion features: the official layout only, absent otherwise
  label                 [B, C]       weak (video-level) labels, 0/1
  audio_label           [B, T, C]    dense audio labels, 0/1: val and test batches only
  visual_label          [B, T, C]    dense visual labels, 0/1: val and test batches only
  audio_pseudo_label    [B, T, C]    segment pseudo labels, 0/1: training batches of a run with
  visual_pseudo_label   [B, T, C]      `config.data.pseudo_labels` (`avvp_jax.tasks.llp.pseudo_labels`)
  audio_modality_label  [B, C]       modality-level video labels, 0/1 (MA's refined labels: the weak label with
  visual_modality_label [B, C]         the classes a refinement dropped from that modality cleared): training
                                       batches of a run with `config.data.refined_labels`
                                       (`avvp_jax.tasks.llp.refined_labels`)
  audio_teacher_logits  [B, T, C]    a UWAV teacher's segment logits, its fitted [C] thresholds (-inf allowed;
  visual_teacher_logits                the same row for every clip) and the summed class frequencies of the hard
  audio_teacher_threshold [B, C]       labels ([B], one value): training batches of a run with
  visual_teacher_threshold             `config.loss.name="uwav"` (`avvp_jax.tasks.llp.uwav`)
  audio_positive_frequency [B]
  visual_positive_frequency
  mask                  [B]          1 on a real clip, 0 on padding (the last, padded batch of a split)
  index                 [B] int32    the clip's row in its split, -1 on padding

Padding clips are all zeros. The training batches of replicas trained side by side (`config.num_seeds`)
carry a leading `[S]` axis on every key. Which feature keys a layout holds, and their widths, is
`avvp_jax.tasks.llp.features.input_dims`.
"""

# The model inputs, in the order the models take them (`motion` absent for a layout without it).
FEATURE_KEYS = ("audio", "frames", "motion")
AUDIO, FRAMES, MOTION = FEATURE_KEYS

LABEL = "label"  # weak labels [B, C]
AUDIO_LABEL = "audio_label"  # dense labels [B, T, C], val / test
VISUAL_LABEL = "visual_label"
DENSE_LABELS = (AUDIO_LABEL, VISUAL_LABEL)

AUDIO_PSEUDO_LABEL = "audio_pseudo_label"  # segment pseudo labels [B, T, C], training
VISUAL_PSEUDO_LABEL = "visual_pseudo_label"
PSEUDO_LABELS = (AUDIO_PSEUDO_LABEL, VISUAL_PSEUDO_LABEL)

AUDIO_MODALITY_LABEL = "audio_modality_label"  # modality-level video labels [B, C], training
VISUAL_MODALITY_LABEL = "visual_modality_label"
MODALITY_LABELS = (AUDIO_MODALITY_LABEL, VISUAL_MODALITY_LABEL)

# A UWAV teacher's side data (`avvp_jax.tasks.llp.uwav`), training batches of a "uwav" run.
AUDIO_TEACHER_LOGITS = "audio_teacher_logits"  # [B, T, C]
VISUAL_TEACHER_LOGITS = "visual_teacher_logits"
AUDIO_TEACHER_THRESHOLD = "audio_teacher_threshold"  # [B, C]
VISUAL_TEACHER_THRESHOLD = "visual_teacher_threshold"
AUDIO_POSITIVE_FREQUENCY = "audio_positive_frequency"  # [B]
VISUAL_POSITIVE_FREQUENCY = "visual_positive_frequency"

MASK = "mask"  # [B] float32, 1 on real clips
INDEX = "index"  # [B] int32, -1 on padding
