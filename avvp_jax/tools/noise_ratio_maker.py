"""JoMoLD's stage 2 as a stage command: a trained noise estimator -> `noise_ratios.npz` and a JSON report.

  report = noise_ratio_maker.make_noise_ratios("workdir/jomold_estimator", "workdir/noise_ratios.npz")

The estimator (configs/jomold.py:estimator; its workdir's best state, or one replica of a multi-seed run,
else their ensemble mean) predicts p_a, p_v of every training clip in eval mode without cross-modal attention
(as the official `calculate_noise_ratio` runs it, whatever the checkpoint's own setting), and
`denoising.calculate_noise_ratio` turns them into the per-class ratios, the batches' clip order a seeded
shuffle. Written: OUT (the official layout, `audio` and `visual` float64 [25]) and OUT with `.json` in place of
`.npz`: the inputs, the ratios per class name, and on the embedded SYNTHETIC data how the labels counted as
noise compare with the set's hidden dense training labels (per modality: flagged correctly, i.e. the class is
truly absent from that modality of the clip, or wrongly). Everything made from SYNTHETIC data says so.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

import ml_collections
import numpy as np

from avvp_jax import inference
from avvp_jax.errors import InputError
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import denoising
from avvp_jax.tasks.llp import synthetic
from avvp_jax.tools import pseudo_label_maker

RULE = (
    "a weak label (clip, class) is noise of a modality when p x P / mean(p) of its class is below the "
    "modality's threshold (P the smoothed label; the mean over 128-clip batches of the batch means); the "
    "ratio is the noisy share of the class's weak labels (JoMoLD calculate_noise_ratio)"
)


def report_path(out: str) -> str:
  """The JSON report beside `out`: `noise_ratios.npz` -> `noise_ratios.json`."""
  return os.path.splitext(out)[0] + ".json"


def make_noise_ratios(
    checkpoint: str,
    out: str,
    *,
    features_dir: str = "",
    labels_dir: str = "",
    replica: int | None = None,
    batch_size: int = denoising.RATIO_BATCH_SIZE,
    order_seed: int = 0,
    audio_threshold: float = denoising.AUDIO_THRESHOLD,
    visual_threshold: float = denoising.VISUAL_THRESHOLD,
) -> dict[str, Any]:
  """Runs stage 2 (module docstring) and returns the report it writes.

  Args:
    checkpoint: the estimator: a training workdir, a step folder or a params-only checkpoint.
    out: the .npz to write (its folder is made).
    features_dir: a features folder (either layout); empty: the embedded SYNTHETIC data of its config.
    labels_dir: the AVVP_*.csv of those clips; empty: the checkpoint's config.data.labels_dir, else packaged.
    replica: a multi-seed estimator's replica (its seed); None: the ensemble (one replica: that one).
    batch_size: clips per batch of the class means (official 128).
    order_seed: seeds the shuffle that orders the batches.
    audio_threshold, visual_threshold: the official 0.6 and 1.8.

  Raises:
    InputError: `out` not ending in .npz, a checkpoint of another encoder than HAN, or bad data.
  """
  if not out.endswith(".npz"):
    raise InputError(f"--out {out!r} must end in .npz (JoMoLD's noise_ratios.npz layout).")
  parser = inference.load_parser(checkpoint, seed=replica)
  config = parser.config
  if config.model.encoder != "han":
    raise InputError(
        f"{checkpoint} holds a {config.model.encoder!r} model: JoMoLD's noise estimator is a HAN "
        "(configs/jomold.py:estimator)."
    )
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.han.cross_attention = False  # calculate_noise_ratio: model(..., with_ca=False)
  parser = inference.Parser(config, parser.params, source=parser.source, seeds=parser.seeds)
  labels_dir = labels_dir or config.data.get("labels_dir", "") or ""
  if features_dir:
    source = pseudo_label_maker.folder_source(
        features_dir, labels_dir or None, ["train"], parser.input_dims
    )
  else:
    source = pseudo_label_maker.synthetic_source(
        config.data, labels_dir or None, ["train"], parser.input_dims
    )
  probs = pseudo_label_maker.teacher_probabilities(parser, source, ["train"], batch_size=64)[
      "train"
  ]
  train = source.splits["train"]
  labels = train.weak_labels
  order = np.random.default_rng(order_seed).permutation(len(train))
  result = denoising.calculate_noise_ratio(
      probs["audio_prob"],
      probs["visual_prob"],
      labels,
      order=order,
      batch_size=batch_size,
      audio_threshold=audio_threshold,
      visual_threshold=visual_threshold,
      audio_smoothing=float(config.loss.audio_smoothing),
      visual_smoothing=float(config.loss.visual_smoothing),
  )
  # A class without weak labels: the official 0 / 0 is NaN, which then drops nothing (no positives); 0 here,
  # so the file stays in [0, 1], and the report names the classes.
  missing = [annotations.CLASSES[c] for c in np.flatnonzero(result["class_counts"] == 0)]
  for m in denoising.MODALITIES:
    result[m] = np.nan_to_num(result[m], nan=0.0)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  temporary = out[: -len(".npz")] + ".partial.npz"
  denoising.write_noise_ratios(temporary, result["audio"], result["visual"])
  os.replace(temporary, out)
  report = {
      "out": os.path.abspath(out),
      "checkpoint": parser.source,
      "replica": replica,
      "data": source.description,
      "synthetic": source.synthetic,
      "num_clips": len(train),
      "rule": RULE,
      "thresholds": {"audio": audio_threshold, "visual": visual_threshold},
      "batch_size": batch_size,
      "order_seed": order_seed,
      "weak_labels": int(result["class_counts"].sum()),
      "classes_without_labels": missing,
      "ratios": {
          m: {name: round(float(v), 6) for name, v in zip(annotations.CLASSES, result[m])}
          for m in denoising.MODALITIES
      },
      "mean_ratio": {m: round(float(np.mean(result[m])), 6) for m in denoising.MODALITIES},
      "flagged": {m: int(result[f"{m}_noisy"].sum()) for m in denoising.MODALITIES},
  }
  if source.synthetic and not features_dir:
    report["against_hidden_dense_labels"] = _synthetic_quality(
        config.data, labels_dir, result, labels
    )
  with open(report_path(out), "w") as f:
    json.dump(report, f, indent=1)
  return report


def _synthetic_quality(
    data_config: Mapping[str, Any], labels_dir: str, result: Mapping[str, Any], labels: np.ndarray
) -> dict[str, Any]:
  """Per modality, the flagged labels against the SYNTHETIC set's hidden dense training labels."""
  data = synthetic.SyntheticLLP(
      num_train_clips=int(
          data_config.get("synthetic_train_clips") or synthetic.DEFAULT_NUM_TRAIN_CLIPS
      ),
      seed=int(data_config.get("synthetic_seed") or 0),
      layout=data_config.get("layout", "official"),
      frames="pooled",
      labels_dir=labels_dir or None,
  )
  dense = dict(zip(denoising.MODALITIES, data.dense_train_labels))
  return {
      m: denoising.ratio_quality(result[f"{m}_noisy"], dense[m].max(axis=1) > 0, labels)
      for m in denoising.MODALITIES
  }


def report_lines(report: Mapping[str, Any]) -> list[str]:
  """A few lines of the report for the terminal."""
  lines = [
      f"noise ratios of {report['num_clips']} training clips ({report['data']}) from {report['checkpoint']}",
      "mean ratio: "
      + ", ".join(f"{m} {report['mean_ratio'][m]:.4f}" for m in denoising.MODALITIES)
      + f" (labels flagged: audio {report['flagged']['audio']}, visual {report['flagged']['visual']} of "
      f"{report['weak_labels']})",
  ]
  for m, q in report.get("against_hidden_dense_labels", {}).items():
    lines.append(
        f"SYNTHETIC {m}: {q['correct']} flagged correctly, {q['wrong']} wrongly (of {q['truly_noisy']} "
        f"weak labels truly absent from the {m}: precision {q['precision']:.3f}, recall {q['recall']:.3f})"
    )
  return lines
