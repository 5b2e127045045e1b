"""The fields of `config.data` an AVE run reads, checked and normalised (no TensorFlow: the task's checks run
before any data are read).

`config.data.features_dir` (empty: the embedded SYNTHETIC set), `synthetic_seed`, and the section
`config.data.ave` (configs/common.py documents every field): `supervision` ("full" | "weak"), `labels_dir`,
`synthetic_train_clips`, `synthetic_eval_clips`, `prob_labels` (PSP's weak target, weak only), `splits` (the
split set: "standard", or "match" for the cross-modality localization task; absent in older configs:
"standard").
"""

from __future__ import annotations

import pathlib
from typing import Any

import ml_collections

from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations

SUPERVISIONS = ("full", "weak")


def is_synthetic(data_config: ml_collections.ConfigDict) -> bool:
  """Whether `config.data` selects the embedded SYNTHETIC set: its `features_dir` is empty."""
  return not data_config.features_dir


def settings(data_config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The fields of `config.data` (and `config.data.ave`) a build depends on, checked and normalised.

  Raises:
    InputError: an unknown supervision, or a features folder that is not one.
  """
  ave = data_config.ave
  if ave.supervision not in SUPERVISIONS:
    raise InputError(
        f"config.data.ave.supervision={ave.supervision!r} is unknown: use one of {', '.join(SUPERVISIONS)}."
    )
  labels_dir = str(annotations.resolve_dir(ave.labels_dir).resolve())
  out = dict(
      supervision=ave.supervision, synthetic=is_synthetic(data_config), labels_dir=labels_dir
  )
  split_set = ave.get("splits", "standard")
  annotations.order_files(split_set)  # an unknown name raises here
  if (
      split_set != "standard"
  ):  # absent for the standard set, so the builds made before split sets keep their key
    out["splits"] = split_set
  prob_labels = ave.get("prob_labels", "")
  if prob_labels:
    path = pathlib.Path(prob_labels).expanduser()
    if ave.supervision != "weak":
      raise InputError(
          "config.data.ave.prob_labels is PSP's weak-setting target: set "
          "--config.data.ave.supervision=weak, or leave prob_labels empty."
      )
    if not path.is_file():
      raise InputError(
          f"config.data.ave.prob_labels {prob_labels!r} is not a file (PSP's prob_label.h5)."
      )
    out["prob_labels"] = str(path.resolve())
  if out["synthetic"]:
    out.update(
        synthetic_train_clips=int(ave.synthetic_train_clips),
        synthetic_eval_clips=int(ave.synthetic_eval_clips),
        synthetic_seed=int(data_config.synthetic_seed),
    )
  else:
    folder = pathlib.Path(data_config.features_dir).expanduser()
    if not folder.is_dir():
      raise InputError(
          f"config.data.features_dir {data_config.features_dir!r} is not a folder: give the folder of "
          "AVE's audio_feature.h5 and visual_feature.h5, or leave it empty for the SYNTHETIC set."
      )
    out["features_dir"] = str(folder.resolve())
  return out
