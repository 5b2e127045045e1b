"""Audio-visual video parsing on LLP: the task and everything that knows LLP.

task               the `Task` the trainer asks (`TASK`): meta, checks, recipe, data, guidance, loss
evaluator          the official parsing scores as an evaluator (`ParsingEvaluator`)
metrics            the official segment- and event-level F1s, exact and jitted; OFFICIAL_THRESHOLD
losses             the HAN / LEAP / LINK losses and their flags
events             thresholds, runs of positive seconds, events and video labels
timelines          timeline pictures (matplotlib)
annotations        the LLP CSVs (packaged in `labels/`), class names, splits, dense labels
features           the feature layouts (official, clip_clap), readers, FRAMES_PER_SECOND, input widths
batch_keys         the keys of an LLP batch and their shapes (the batch contract)
tfds_llp           the TFDS builder (real features or the embedded SYNTHETIC set)
pipeline           LLP builds, keyed by their inputs, and their `streams.Streams`
run_data           a run's data: streams checked against the model, pseudo labels attached
pseudo_labels      VALOR-format segment pseudo labels: read, write, score
synthetic          the embedded SYNTHETIC LLP-structured set
simulated_teacher  its SIMULATED VALOR-like pseudo labels
"""
