"""The AVE batch contract: the keys of a batch dict and what each holds.

B clips, T = 10 one-second segments; float32 unless said otherwise.

  audio          [B, T, 128]          VGGish embeddings (the released audio_feature.h5)
  visual         [B, T, 7, 7, 512]    VGG-19 pool5 maps, channels last (visual_feature.h5)
  segment_label  [B, T, 29]           one-hot label per segment (28 = background)
  video_label    [B, 29]              one-hot video class (the weak setting's noisy videos: background)
  event_mask     [B, T]               1 on event segments
  prob_label     [B, 29]              with `supervision="weak"` and `config.data.ave.prob_labels` only (every
                                      split; only a loss reads it): PSP's share of event / background segments
                                      per video (leaks durations)
  mask           [B]                  1 on a real clip, 0 on padding
  index          [B] int32            the clip's row in its split, -1 on padding

With `supervision="weak"` training batches hold `video_label` only (no `segment_label`, no `event_mask`);
val and test batches always hold all three labels. Models add `segment_class` [B, T] int32 to their outputs
(their official rule, `avvp_jax.tasks.ave.decisions`), which the evaluator scores.
"""

FEATURE_KEYS = ("audio", "visual")
AUDIO, VISUAL = FEATURE_KEYS

SEGMENT_LABEL = "segment_label"
VIDEO_LABEL = "video_label"
EVENT_MASK = "event_mask"
LABEL_KEYS = (SEGMENT_LABEL, VIDEO_LABEL, EVENT_MASK)
PROB_LABEL = "prob_label"

MASK = "mask"
INDEX = "index"

SEGMENT_CLASS = "segment_class"  # a model output: [B, T] int32
