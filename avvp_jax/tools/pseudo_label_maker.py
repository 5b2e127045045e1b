"""Segment pseudo labels made by a trained parser (the teacher), in VALOR's layout: `launch/make_pseudo_labels.py`.

The two-stage recipe for users without VALOR's CLAP/CLIP pseudo labels: train a teacher (HAN, or any
parser), run it over every clip, keep what it is confident about within each clip's weak label, and train
LEAP on those labels with `--config.data.pseudo_labels=OUT`.

  report = pseudo_label_maker.make_pseudo_labels("workdir/han", "pseudo/han", features_dir="/data/llp")

The rule. For clip n, second t, class c and modality m (audio, visual), the pseudo label is 1 when
  * c is in the clip's weak label (LLP's video-level label), and
  * the teacher's segment probability of m, `segment_<m>_prob[n, t, c]`, is >= the threshold of (m, c).
The weak label stands in for the teacher's video-level gate (the official evaluation gates by the predicted
video-level probability; here the true video label is known). Every split is filtered the same way: VALOR's
released files cover train, val and test and are restricted to the weak labels of each, and only then is
the quality measured on val and test an estimate of the quality of the training labels (which have no
dense labels to check against). LEAP trains on the train files only; the val and test files are there for
`quality.json` and for anyone who wants VALOR's complete layout.

Thresholds: one number (default 0.5), one per modality, and/or one per (modality, class). With
`tune_on_val=True` each (modality, class) threshold is chosen on the validation split's dense labels from
`TUNING_GRID` to maximise that class's F1 pooled over the validation clips' seconds (UWAV, CVPR 2025, tunes
its thresholds on validation); ties go to the value closest to the given threshold, and a class with no
true and no kept second in validation keeps the given threshold. The validation figures of `quality.json`
are then optimistic; the test figures stay held out.

The teacher: `avvp_jax.load_parser(checkpoint)`, so a multi-seed workdir is its seed ensemble (the mean of
the replicas' probabilities), or one replica with `seed=`. Features come from a features folder in either
layout (official: vggish/ res152/ r2plus1d_18/; clip_clap: CLAP/features/ CLIP/features/) with the label
files of its clips, or, with no folder, from the embedded SYNTHETIC dataset the checkpoint's config describes
(`config.data.synthetic_*`: the same clips a default run trains on). Everything made from SYNTHETIC data
says so: the folder's `SYNTHETIC.txt`, `quality.json` ("synthetic": true and its "data" line), the log and
the printed summary.

Output (`write_pseudo_labels`, written whole or not at all): `OUT/CLAP/segment_pseudo_labels/<id>.npy` and
`OUT/CLIP/segment_pseudo_labels/<id>.npy` ([10, 25] int64 0/1) for every clip of the splits made, and
`OUT/quality.json`: per split the clip count and positives, and for val and test per modality the pooled
segment-level precision, recall and F1 and the official segment F1 (`pseudo_labels.quality`), beside the
teacher's own official segment F1 (its usual gated predictions) for comparison.

Length: one stage, read top to bottom: inputs and their checks, batched prediction, thresholds (fixed or
tuned on val), the atomic write and the quality report; splitting it would scatter one workflow.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import sys
from typing import Any, Callable, Mapping, Sequence

from absl import logging
import numpy as np

from avvp_jax.tasks.llp import events
from avvp_jax import inference
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import pseudo_labels
from avvp_jax.tasks.llp import synthetic
from avvp_jax.tasks.llp import uwav
from avvp_jax.errors import InputError

TUNING_GRID = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05, 0.10, ..., 0.95
QUALITY_FILE = "quality.json"
UWAV_RULE = (
    "UWAV: a second of class c is a pseudo label of modality m when c is in the clip's weak label and the "
    "teacher's segment logit of m is > the threshold of (m, c) fitted on val (get_best_f_threshold); every split "
    "is filtered by its weak labels"
)
RULE = (
    "a second of class c is a pseudo label of modality m when c is in the clip's weak label and the teacher's "
    "segment probability of m is >= the threshold of (m, c); every split is filtered by its weak labels"
)

Thresholds = dict[str, np.ndarray]  # modality -> [C] float32


# --- thresholds and the rule (numpy) -----------------------------------------------------------------


def modality_thresholds(threshold: Any = metrics.OFFICIAL_THRESHOLD) -> Thresholds:
  """Per-modality `[C]` thresholds from one number, `[C]` numbers, {class name: value} (others 0.5), or
  {"audio": any of those, "visual": ...} (a modality left out gets 0.5)."""
  if (
      isinstance(threshold, Mapping)
      and threshold
      and set(threshold) <= set(annotations.LABEL_MODALITIES)
  ):
    return {
        m: events.class_thresholds(threshold.get(m, metrics.OFFICIAL_THRESHOLD), f"{m} threshold")
        for m in annotations.LABEL_MODALITIES
    }
  values = events.class_thresholds(threshold, "threshold")
  return {m: values.copy() for m in annotations.LABEL_MODALITIES}


def apply_rule(segment_prob: Any, weak_labels: Any, threshold: Any) -> np.ndarray:
  """Pseudo labels of one modality: bool `[N, T, C]`, `weak[n, c] and segment_prob[n, t, c] >= threshold[c]`.

  Args:
    segment_prob: `[N, T, C]` the teacher's segment probabilities of the modality.
    weak_labels: `[N, C]` 0/1 weak labels of the clips.
    threshold: `[C]` thresholds (or one number).
  """
  prob = np.asarray(segment_prob, np.float32)
  weak = np.asarray(weak_labels) > 0
  if prob.ndim != 3 or weak.shape != (prob.shape[0], prob.shape[2]):
    raise InputError(
        f"apply_rule got segment probabilities {prob.shape} and weak labels {weak.shape}: pass [N, T, C] "
        "and [N, C] arrays of the same clips."
    )
  return (prob >= np.asarray(threshold, np.float32)) & weak[:, None, :]


def tune_thresholds(
    segment_prob: Any,
    true_labels: Any,
    weak_labels: Any,
    default: Any = metrics.OFFICIAL_THRESHOLD,
    grid: Sequence[float] = TUNING_GRID,
) -> np.ndarray:
  """Per-class thresholds of one modality that maximise each class's pooled F1 of `apply_rule` on labelled clips.

  Args:
    segment_prob: `[N, T, C]` teacher probabilities of the modality on the tuning clips (validation).
    true_labels: `[N, T, C]` their dense labels of the modality.
    weak_labels: `[N, C]` their weak labels.
    default: `[C]` (or one) thresholds: the tie-breaker (the grid value closest to it wins) and what a class
      with no true and no kept second keeps.
    grid: the candidate thresholds.

  Returns:
    `[C]` float32 thresholds. Per class c, F1 = 2 TP / (2 TP + FP + FN) over all (clip, second) cells of c;
    0/0 counts as 1 (nothing to find, nothing claimed).
  """
  prob = np.asarray(segment_prob, np.float32)
  true = np.asarray(true_labels) > 0
  if true.shape != prob.shape:
    raise InputError(
        f"tune_thresholds got probabilities {prob.shape} and dense labels {true.shape}: pass both as "
        "[N, T, C]."
    )
  num_classes = prob.shape[-1]
  default = np.broadcast_to(np.asarray(default, np.float32), (num_classes,))
  grid_g = np.asarray(grid, np.float32)
  tp, fp = [], []
  for value in grid_g:  # one [N, T, C] pass per candidate keeps the memory at that of the inputs
    kept = apply_rule(prob, weak_labels, value)
    tp.append(np.sum(kept & true, axis=(0, 1)))
    fp.append(np.sum(kept & ~true, axis=(0, 1)))
  tp_gxc, fp_gxc = np.stack(tp).astype(np.float64), np.stack(fp).astype(np.float64)
  fn_gxc = np.sum(true, axis=(0, 1))[None].astype(np.float64) - tp_gxc
  denominator = 2 * tp_gxc + fp_gxc + fn_gxc
  f1_gxc = np.where(denominator > 0, 2 * tp_gxc / np.maximum(denominator, 1), 1.0)
  best_c = f1_gxc.max(axis=0)
  distance_gxc = np.where(f1_gxc == best_c[None], np.abs(grid_g[:, None] - default[None]), np.inf)
  chosen = grid_g[np.argmin(distance_gxc, axis=0)]
  untunable = np.all(denominator == 0, axis=0)  # no true second and none kept at any threshold
  return np.where(untunable, default, chosen).astype(np.float32)


# --- where the clips come from -----------------------------------------------------------------------


@dataclasses.dataclass
class ClipSource:
  """The clips the teacher labels: their annotations and a reader of their (pooled) features.

  Attributes:
    splits: split name -> `annotations.Split` (weak labels; dense labels for val / test).
    read: (split, rows) -> {"audio", "frames", ("motion")} `[B, T, D]` float32.
    description: what the data is, for logs and quality.json (says SYNTHETIC for synthetic data).
    synthetic: made from SYNTHETIC data.
  """

  splits: dict[str, annotations.Split]
  read: Callable[[str, Sequence[int]], dict[str, np.ndarray]]
  description: str
  synthetic: bool


def detect_layout(features_dir: str | os.PathLike[str]) -> str:
  """The layout of the `--features` folder (`features.detect_layout`, this tool's messages)."""
  return features_lib.detect_layout(
      features_dir,
      name="--features",
      alternative=", or leave it empty for the embedded synthetic data",
  )


def folder_source(
    features_dir: str | os.PathLike[str],
    labels_dir: str | os.PathLike[str] | None,
    split_names: Sequence[str],
    input_dims: Mapping[str, int],
) -> ClipSource:
  """The clips of the label files in `labels_dir` (None: the packaged LLP files), read from `features_dir`.

  Raises:
    InputError: a folder of neither layout or of other widths than the teacher's, missing feature files
      (the first one named), bad label files.
  """
  root = pathlib.Path(features_dir).expanduser()
  layout = detect_layout(root)
  features_lib.check_input_dims(
      layout, input_dims, where=f"--features {str(root)!r}", model="the teacher"
  )
  splits = {name: annotations.load_split(name, labels_dir or None)[0] for name in split_names}
  features_lib.check_features_dir(root, layout, splits)  # every file present, before any work

  def read(split: str, rows: Sequence[int]) -> dict[str, np.ndarray]:
    data = splits[split]
    loaded = [
        features_lib.load_clip(root, layout, "pooled", data.clip_ids[r], data.filenames[r])
        for r in rows
    ]
    return {key: np.stack([clip[key] for clip in loaded]) for key in loaded[0]}

  marker = root / synthetic.MARKER_FILE
  labels = annotations.resolve_labels_dir(labels_dir or None)
  description = f"LLP features from {root} ({layout} layout), labels from {labels}"
  if marker.is_file():
    description = (
        f"SYNTHETIC features written by launch/make_synthetic.py (marker {marker}): {description}"
    )
  return ClipSource(splits=splits, read=read, description=description, synthetic=marker.is_file())


def synthetic_source(
    data_config: Mapping[str, Any],
    labels_dir: str | os.PathLike[str] | None,
    split_names: Sequence[str],
    input_dims: Mapping[str, int],
) -> ClipSource:
  """The embedded SYNTHETIC dataset of `data_config` (a run's `config.data`: synthetic_train_clips,
  synthetic_seed, synthetic_eval_clips, layout), generated clip by clip as the trainer's build does.
  """
  get = (
      lambda name, default: data_config.get(name, default)
      if data_config.get(name, None) is not None
      else default
  )
  layout = get("layout", "official")
  features_lib.check_input_dims(
      layout, input_dims, where="the embedded synthetic data", model="the teacher"
  )
  data = synthetic.SyntheticLLP(
      num_train_clips=int(get("synthetic_train_clips", synthetic.DEFAULT_NUM_TRAIN_CLIPS)),
      seed=int(get("synthetic_seed", 0)),
      layout=layout,
      frames="pooled",
      labels_dir=labels_dir or None,
  )
  eval_clips = int(get("synthetic_eval_clips", 0))
  splits = {}
  for name in split_names:
    split = data.split(name)
    splits[name] = split.head(eval_clips) if name != "train" and eval_clips > 0 else split
  sizes = ", ".join(f"{name} {len(split)}" for name, split in splits.items())
  description = (
      f"SYNTHETIC LLP-structured features (avvp_jax.tasks.llp.synthetic: seed {data.seed}, {layout} layout; "
      f"clips {sizes}), real weak labels and real val/test dense labels"
  )
  return ClipSource(
      splits=splits, read=data.features_batch, description=description, synthetic=True
  )


# --- the teacher's probabilities ---------------------------------------------------------------------


def teacher_probabilities(
    parser: inference.Parser,
    source: ClipSource,
    split_names: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool | None = None,
) -> dict[str, dict[str, np.ndarray]]:
  """The teacher's probabilities of every clip: split -> {`inference.OUTPUT_KEYS`: `[N, ...]` float32}.

  Batches of `batch_size` clips of one split (`inference.predict_batches`: padded to one size, so one
  compilation serves every batch); a tqdm bar counts clips (None: only on a terminal).
  """
  import tqdm  # pylint: disable=g-import-not-at-top  (only when labelling)

  total = sum(len(source.splits[name]) for name in split_names)
  size = max(1, min(batch_size, max((len(source.splits[name]) for name in split_names), default=1)))
  jobs = [
      (name, list(range(start, min(start + size, len(source.splits[name])))))
      for name in split_names
      for start in range(0, len(source.splits[name]), size)
  ]
  parts: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in split_names}
  bar = tqdm.tqdm(
      total=total,
      unit="clip",
      desc="teacher",
      disable=None if progress is None else not progress,
      file=sys.stderr,
      dynamic_ncols=True,
  )
  try:
    for (name, rows), probs in inference.predict_batches(
        parser.predict, lambda job: source.read(*job), jobs, size
    ):
      parts[name].append({k: np.asarray(v, np.float32) for k, v in probs.items()})
      bar.update(len(rows))
  finally:
    bar.close()
  t, c = annotations.NUM_SECONDS, annotations.NUM_CLASSES
  keys = inference.OUTPUT_KEYS
  empty = {
      key: np.zeros((0, t, c) if key.startswith("segment_") else (0, c), np.float32) for key in keys
  }
  return {
      name: {
          key: np.concatenate([p[key] for p in chunks]) if chunks else empty[key] for key in keys
      }
      for name, chunks in parts.items()
  }


# --- the whole job -----------------------------------------------------------------------------------


def _rounded(scores: Mapping[str, Any]) -> dict[str, Any]:
  return {
      k: (_rounded(v) if isinstance(v, Mapping) else round(float(v), 4)) for k, v in scores.items()
  }


def marker_text(description: str, checkpoint: str) -> str:
  """The `SYNTHETIC.txt` of a pseudo-label folder made from synthetic data."""
  return (
      "\n".join(
          [
              "SYNTHETIC DATA - pseudo labels of SYNTHETIC features, not of real LLP clips.",
              "",
              f"Segment pseudo labels made by launch/make_pseudo_labels.py with the teacher {checkpoint}",
              f"on {description}.",
              "Numbers obtained with them are not comparable with published LLP results.",
          ]
      )
      + "\n"
  )


def make_pseudo_labels(
    checkpoint: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    features_dir: str | os.PathLike[str] | None = None,
    labels_dir: str | os.PathLike[str] | None = None,
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    tune_on_val: bool = False,
    splits: Sequence[str] = annotations.SPLITS,
    batch_size: int = 64,
    seed: int | None = None,
    progress: bool | None = None,
    uwav_layout: bool = False,
) -> dict[str, Any]:
  """Runs the teacher over every clip of `splits`, writes its pseudo labels to `out`; returns quality.json's dict.

  With `uwav_layout` (a UWAV student's teacher, `avvp_jax.tasks.llp.uwav`): the teacher's segment logits of every
  clip and the per-class thresholds fitted on them on val (`uwav.fit_thresholds`, `get_best_f_threshold`'s
  rule, -inf allowed) are written in UWAV's layout under `out/UWAV/`, and the segment labels follow UWAV's
  rule, weak and logit > threshold (the given thresholds are not used).

  Args:
    checkpoint: the teacher: a training workdir (a multi-seed one is its ensemble) or a checkpoint folder.
    out: the pseudo-label folder to write (`config.data.pseudo_labels` of the LEAP run).
    features_dir: a features folder (either layout); None or "": the embedded SYNTHETIC data the checkpoint's
      config describes (only for a teacher trained on it).
    labels_dir: the `AVVP_*.csv` files of the clips; None: the checkpoint's `config.data.labels_dir` (empty
      there: the packaged LLP files).
    threshold: see `modality_thresholds`.
    tune_on_val: choose each (modality, class) threshold on the validation split (see the module docstring);
      `threshold` is then the tie-breaker.
    splits: the splits to label; must include train (what LEAP trains on), and val for `tune_on_val`.
    batch_size: clips per jitted call.
    seed: a multi-seed teacher's replica to use; None: its seed ensemble.
    progress: a tqdm bar over clips; None: only on a terminal.

  Raises:
    InputError: bad flags, checkpoint, features or labels (nothing is written then).
  """
  split_names = list(dict.fromkeys(s.strip() for s in splits if s.strip()))
  unknown = [s for s in split_names if s not in annotations.SPLITS]
  if unknown or "train" not in split_names:
    raise InputError(
        f"splits {','.join(splits)}: name train (what LEAP trains on) and optionally val and test."
    )
  if tune_on_val and "val" not in split_names:
    raise InputError("tune_on_val needs the val split: add val to the splits.")
  if uwav_layout and "val" not in split_names:
    raise InputError("uwav fits its thresholds on the val split: add val to the splits.")
  if uwav_layout and tune_on_val:
    raise InputError(
        "uwav and tune_on_val both choose the thresholds: UWAV fits them on the val logits; drop tune_on_val."
    )
  if batch_size < 1:
    raise InputError(f"batch_size={batch_size} must be positive.")
  if not out or not str(out).strip():
    raise InputError("out is empty: pass the folder to write the pseudo labels into.")
  if not pseudo_labels.replaceable(out):
    raise InputError(
        f"--out {str(out)!r} already holds files this tool did not write: pick a new or empty folder "
        "(a folder written by launch/make_pseudo_labels.py is replaced)."
    )
  given = modality_thresholds(threshold)
  if features_dir:  # a folder of the wrong layout fails before the teacher is loaded
    detect_layout(pathlib.Path(features_dir).expanduser())
  checkpoint = os.path.abspath(os.path.expanduser(os.fspath(checkpoint)))
  parser = inference.load_parser(checkpoint, seed=seed)
  config = parser.config
  data_config = config.get("data", None) or {}
  labels_dir = labels_dir or data_config.get("labels_dir", "") or None
  if features_dir:
    source = folder_source(features_dir, labels_dir, split_names, parser.input_dims)
  else:
    if data_config.get("features_dir", ""):
      raise InputError(
          f"the teacher in {checkpoint} was trained on the features in {data_config['features_dir']!r}: "
          "pass "
          "--features (without it the embedded synthetic data is labelled, which only fits a teacher "
          "trained on it)."
      )
    source = synthetic_source(data_config, labels_dir, split_names, parser.input_dims)
  ids = [clip for name in split_names for clip in source.splits[name].clip_ids]
  repeated = [clip for clip, count in collections.Counter(ids).items() if count > 1]
  if repeated:
    raise InputError(
        f"clip {repeated[0]} is listed more than once in the splits {', '.join(split_names)} "
        f"({len(repeated)} such clips): pseudo-label files are named by clip id, so list each clip "
        "once; fix the label files."
    )
  logging.info("Pseudo labels from %s on %s", parser.source, source.description)

  probs = teacher_probabilities(
      parser, source, split_names, batch_size=batch_size, progress=progress
  )
  thresholds = given
  teacher_logits = {}
  if (
      uwav_layout
  ):  # UWAV's teacher: logits, thresholds fitted on them on val, labels weak & logit > threshold
    teacher_logits = {
        name: {
            m: uwav.logits_from_prob(probs[name][f"segment_{m}_prob"])
            for m in annotations.LABEL_MODALITIES
        }
        for name in split_names
    }
    val = source.splits["val"]
    thresholds = {
        m: uwav.fit_thresholds(
            teacher_logits["val"][m], getattr(val, f"{m}_labels"), val.weak_labels
        )
        for m in annotations.LABEL_MODALITIES
    }
  elif tune_on_val:
    val = source.splits["val"]
    thresholds = {
        m: tune_thresholds(
            probs["val"][f"segment_{m}_prob"],
            getattr(val, f"{m}_labels"),
            val.weak_labels,
            default=given[m],
        )
        for m in annotations.LABEL_MODALITIES
    }
  labels = {
      name: {
          m: uwav.hard_labels(
              teacher_logits[name][m], source.splits[name].weak_labels, thresholds[m]
          )
          if uwav_layout
          else apply_rule(
              probs[name][f"segment_{m}_prob"], source.splits[name].weak_labels, thresholds[m]
          )
          for m in annotations.LABEL_MODALITIES
      }
      for name in split_names
  }

  report: dict[str, Any] = {
      "synthetic": source.synthetic,
      "data": source.description,
      "teacher": {
          "checkpoint": checkpoint,
          "model": f"{config.model.encoder}/{config.model.decoder}",
          "seeds": parser.seeds
          if parser.seeds is not None
          else [seed if seed is not None else int(config.get("seed", 0))],
          "ensemble": parser.seeds is not None,
      },
      "rule": UWAV_RULE if uwav_layout else RULE,
      "thresholds": {
          m: dict(
              zip(
                  annotations.CLASSES,
                  (round(float(v), 4) if np.isfinite(v) else str(v) for v in thresholds[m]),
              )
          )
          for m in annotations.LABEL_MODALITIES
      },
      "thresholds_tuned_on": "val" if tune_on_val or uwav_layout else None,
      "splits": {},
  }
  for name in split_names:
    split = source.splits[name]
    entry: dict[str, Any] = {
        "num_clips": len(split),
        "positives": {m: int(labels[name][m].sum()) for m in annotations.LABEL_MODALITIES},
    }
    if split.audio_labels is not None and len(split):
      entry["quality"] = _rounded(
          pseudo_labels.quality(
              labels[name]["audio"], labels[name]["visual"], split.audio_labels, split.visual_labels
          )
      )
      teacher_audio, teacher_visual = events.segment_predictions(probs[name])
      scores = metrics.parsing_scores(
          teacher_audio.astype(np.float32),
          teacher_visual.astype(np.float32),
          split.audio_labels,
          split.visual_labels,
      )
      entry["teacher_segment_f1"] = _rounded(
          {m: scores[f"segment/{m}"] for m in annotations.LABEL_MODALITIES}
      )
    report["splits"][name] = entry
  if tune_on_val or uwav_layout:
    report["note"] = "thresholds tuned on val: its figures are optimistic, test is held out"
  if uwav_layout:
    report["uwav"] = {
        "logits": dict(uwav.LOGIT_DIRS),
        "thresholds": dict(uwav.THRESHOLD_FILES),
        "logits_from": "log(p / (1 - p)) of the teacher's segment probabilities",
    }

  audio = np.concatenate([labels[name]["audio"] for name in split_names])
  visual = np.concatenate([labels[name]["visual"] for name in split_names])
  pseudo_labels.write_pseudo_labels(
      out,
      ids,
      audio,
      visual,
      marker_text=marker_text(source.description, checkpoint) if source.synthetic else None,
      extra_files={QUALITY_FILE: json.dumps(report, indent=2) + "\n"},
      array_files=uwav.array_files(
          ids,
          {
              m: np.concatenate([teacher_logits[name][m] for name in split_names])
              for m in annotations.LABEL_MODALITIES
          },
          thresholds,
      )
      if uwav_layout
      else None,
  )
  report["out"] = str(pathlib.Path(out).expanduser().absolute())
  return report


def report_lines(report: Mapping[str, Any]) -> list[str]:
  """The printed summary of `make_pseudo_labels`'s report: counts, then a quality table per split."""
  kind = "SYNTHETIC pseudo labels" if report["synthetic"] else "pseudo labels"
  sizes = ", ".join(f"{name} {entry['num_clips']}" for name, entry in report["splits"].items())
  tuned = " (thresholds tuned on val)" if report.get("thresholds_tuned_on") else ""
  lines = [
      f"{kind} of {sizes} clips{tuned} -> {report.get('out', '')}",
      f"{'split':<6} {'modality':<8} {'precision':>9} {'recall':>7} {'F1':>6} {'seg. F1':>8} "
      f"{'teacher seg. F1':>16}",
  ]
  for name, entry in report["splits"].items():
    if "quality" not in entry:
      continue
    for m in annotations.LABEL_MODALITIES:
      q = entry["quality"][m]
      lines.append(
          f"{name:<6} {m:<8} {q['precision']:>9.2f} {q['recall']:>7.2f} {q['f1']:>6.2f} "
          f"{q['segment_f1']:>8.2f} {entry['teacher_segment_f1'][m]:>16.2f}"
      )
  return lines
