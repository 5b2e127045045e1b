"""Audio-visual event localization on AVE: the task and everything that knows AVE.

task          the `Task` the trainer asks (`TASK`): meta, checks, data, loss dispatch
annotations   Annotations.txt and the h5 splits (packaged in `data/`), classes, segment / video / event labels
decisions     the official decision rules: model scores -> `segment_class`
metrics       segment accuracy as masked per-label counts
evaluator     the accuracy as an evaluator (`SegmentAccuracyEvaluator`)
batch_keys    the keys of an AVE batch and their shapes (the batch contract)
features      the released h5 feature files: streamed, checked readers
data_config   the fields of `config.data` an AVE run reads, checked (no TensorFlow)
synthetic     the embedded SYNTHETIC AVE set
tfds_ave      the TFDS builder `avvp_ave` (real h5 features or the SYNTHETIC set)
pipeline      AVE builds, keyed by their inputs, and their `streams.Streams`
losses/       the official losses, one module per model family (ave, psp, cmbs)
inference     `load_localizer` / `Localizer`: a trained or converted localizer's outputs and decisions
"""
