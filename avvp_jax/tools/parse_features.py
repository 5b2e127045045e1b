"""The work of `launch/parse.py`: parse a features folder or an .npz file, write JSON records and timelines.

  summary = parse_features.parse_files("workdir/han", "/data/llp", "events.json", plot="timeline.png")

`parse_files` loads a parser (`avvp_jax.inference.load_parser`), reads clips in padded batches (features
loaded on worker threads while the previous batch runs: `avvp_jax.inference.predict_batches`), turns
probabilities into events (`avvp_jax.tasks.llp.events`), writes one JSON record per clip, {"clip", "events":
[{"modality", "label", "onset", "offset", "score"}], "video_labels": [{"label", "score", "audio",
"visual"}], "provenance": what produced it (`avvp_jax.provenance.parse_record`: checkpoint, step, seeds,
thresholds, synthetic, package version and commit)}, and draws the timelines of chosen clips (`avvp_jax.tasks.llp.timelines`), with the dense labels as
ground truth when the clips have them. An event's `score` is the mean segment probability over its
seconds (in [0, 1]); a video label's `score` is the model's whole-video score `video_prob`, not a
probability (MMIL: in [0, 2); LEAP: 0 or 1), and its `audio` / `visual` are modality-level
probabilities (`avvp_jax.tasks.llp.events.VIDEO_SCORE`).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
from typing import Any, Sequence

import ml_collections
import numpy as np
import tqdm

from avvp_jax.tasks.llp import events as events_lib
from avvp_jax import inference
from avvp_jax import provenance
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import timelines
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.tasks.llp import synthetic
from avvp_jax.errors import InputError

NPZ_FRAME_KEYS = ("frames", "visual")  # the frames of an .npz may be stored under either name


def folder_clips(features_dir: str | os.PathLike[str], layout: str) -> list[str]:
  """Clip ids of a features folder: the `.npy` names of its audio sub-folder, sorted."""
  folder = os.path.join(
      os.path.expanduser(os.fspath(features_dir)), features_lib.LAYOUTS[layout]["audio"][0]
  )
  return sorted(name[:-4] for name in os.listdir(folder) if name.endswith(".npy"))


def read_clip_list(path: str | os.PathLike[str]) -> list[str]:
  """Clip ids from a text file: the first field of every non-empty line (`#` starts a comment)."""
  path = os.path.expanduser(os.fspath(path))
  if not os.path.isfile(path):
    raise InputError(
        f"clip list {path!r} does not exist: pass a text file with one clip id per line."
    )
  with open(path) as f:
    ids = [line.split("#", 1)[0].split() for line in f]
  ids = [fields[0] for fields in ids if fields]
  if not ids:
    raise InputError(f"clip list {path!r} names no clip: write one clip id per line.")
  return ids


def _load_npz(
    path: str, config: ml_collections.ConfigDict
) -> tuple[list[str], dict[str, np.ndarray]]:
  """(clip ids, {"audio", "frames", "motion"?} [N, ...]) from one .npz file."""
  try:
    with np.load(path, allow_pickle=False) as npz:
      arrays = {key: npz[key] for key in npz.files}
  except (ValueError, OSError, EOFError) as error:
    raise InputError(
        f"--features {path!r} is not a readable .npz file ({error}): save it with "
        "numpy.savez(path, audio=..., frames=..., motion=...)."
    ) from None
  frame_key = next((key for key in NPZ_FRAME_KEYS if key in arrays), None)
  use_motion = int(config.model.input_dims.get("motion", 0)) > 0
  missing = [
      name
      for name, present in (
          ("audio", "audio" in arrays),
          ("frames (or visual)", frame_key),
          ("motion", "motion" in arrays or not use_motion),
      )
      if not present
  ]
  if missing:
    raise InputError(
        f"--features {path!r} has no {', '.join(missing)} array (it holds {sorted(arrays)}): save "
        "the model's inputs as audio, frames and motion."
    )
  out = {"audio": arrays["audio"], "frames": arrays[frame_key]}
  if use_motion:
    out["motion"] = arrays["motion"]
  if config.get("data", {}).get("layout", "official") == "clip_clap" and out["audio"].shape[
      -2:-1
  ] == (64,):
    out["audio"] = features_lib.clap_segments(
        out["audio"]
    )  # CLAP feature maps -> 10 one-second segments
  stem = os.path.splitext(os.path.basename(path))[0]
  if out["audio"].ndim == 2:
    return [stem], {key: value[None] for key, value in out.items()}
  num_clips = out["audio"].shape[0] if out["audio"].ndim == 3 else 0
  if "clip_ids" in arrays:
    ids = [str(x) for x in np.asarray(arrays["clip_ids"]).reshape(-1)]
    if len(ids) != num_clips:
      raise InputError(
          f"--features {path!r} holds {len(ids)} clip_ids for {num_clips} clips: give one id per clip."
      )
  else:
    ids = [f"{stem}_{i}" for i in range(num_clips)]
  return ids, out


def ground_truth(
    labels_dir: str | os.PathLike[str] | None, split: str
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """clip id -> (audio, visual) dense labels `[T, C]` of `split` ("val", "test" or "auto": both)."""
  splits = ("val", "test") if split == "auto" else ((split,) if split in ("val", "test") else ())
  if split not in ("auto", "val", "test", "none"):
    raise InputError(f"split {split!r} has no dense labels: use auto, val, test or none.")
  table: dict[str, tuple[np.ndarray, np.ndarray]] = {}
  for name in reversed(splits):  # val wins over test for a clip in both
    data = annotations.load_split(name, labels_dir or None)[0]
    for row, clip in enumerate(data.clip_ids):
      table[clip] = (data.audio_labels[row], data.visual_labels[row])
  return table


def _write_json_records(path: str):
  """A writer of records to `path`: a JSON list, or JSON lines for a `.jsonl` name.

  Records go to `path + ".tmp"`, renamed to `path` by `close()`.

  Returns:
    (write, close): `write(record)` appends one JSON-serialisable dict; `close()` finishes the file.
  """
  lines = path.endswith(".jsonl")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  f = open(path + ".tmp", "w")  # pylint: disable=consider-using-with
  count = 0

  def write(record: dict[str, Any]) -> None:
    nonlocal count
    text = json.dumps(record)
    if lines:
      f.write(text + "\n")
    else:
      f.write(("[\n" if count == 0 else ",\n") + text)
    count += 1

  def close() -> None:
    if not lines:
      f.write("[]\n" if count == 0 else "\n]\n")
    f.close()
    os.replace(path + ".tmp", path)

  return write, close


def parse_files(
    checkpoint: str,
    features: str,
    out: str,
    *,
    clips: Sequence[str] | None = None,
    clip_list: str | None = None,
    batch_size: int = 64,
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
    plot: str | None = None,
    plot_dir: str | None = None,
    plot_clips: Sequence[str] | None = None,
    plot_max: int = 4,
    labels_dir: str | None = None,
    split: str = "auto",
    title: str | None = None,
    progress: bool | None = None,
    seed: int | None = None,
) -> str:
  """What `launch/parse.py` does: parse a features folder or .npz, write JSON records and timelines.

  Args:
    checkpoint: a workdir or checkpoint folder (`inference.load_parser`).
    features: a features folder (either layout) or one .npz file (see launch/parse.py).
    out: the JSON file (a list of records; `.jsonl`: one record per line).
    clips, clip_list: the clips of a folder to parse (ids, or a file of ids); default all.
    batch_size: clips per jitted call (the last batch is padded, so one compilation serves every batch).
    threshold, gate_threshold: as in `inference.Parser.parse`.
    plot: a picture of the timelines of the plotted clips, .png, .pdf or .svg by its extension
      (others are an InputError, raised before anything is parsed); plot_dir: a folder of one PNG
      per plotted clip.
    plot_clips: the ids to plot; default the first `plot_max` clips.
    labels_dir, split: the dense labels drawn as ground truth (split "auto", "val", "test" or "none").
    title: the title of the `plot` picture; default names the checkpoint (and says synthetic when the
      folder holds the synthetic data marker).
    progress: a tqdm bar; None: only on a terminal.
    seed: for a multi-seed checkpoint, the replica to use; None: the seed ensemble (`inference.load_parser`).

  Returns:
    A one-line summary of what was written.
  """
  if batch_size < 1:
    raise InputError(f"batch_size={batch_size} must be positive.")
  features = os.path.expanduser(os.fspath(features))
  if not os.path.exists(features):
    raise InputError(
        f"--features {features!r} does not exist: pass a features folder or a .npz file."
    )
  if plot:
    timelines.plot_format(plot)  # a bad extension is refused before the model is loaded
  thresholds = events_lib.class_thresholds(threshold, "threshold")
  gates = (
      thresholds
      if gate_threshold is None
      else events_lib.class_thresholds(gate_threshold, "gate_threshold")
  )
  truth_table = ground_truth(labels_dir, split) if (plot or plot_dir) and split != "none" else {}
  parser = inference.load_parser(checkpoint, seed=seed)
  config = parser.config

  synthetic_data = False
  if os.path.isdir(features):
    layout = features_lib.detect_layout(
        features, name="--features", alternative=", or at one .npz file"
    )
    features_lib.check_input_dims(
        layout,
        config.model.input_dims,
        where=f"features folder {features!r}",
        model="the checkpoint's model",
    )
    synthetic_data = os.path.isfile(os.path.join(features, synthetic.MARKER_FILE))
    if clip_list:
      clip_ids = read_clip_list(clip_list)
    elif clips:
      clip_ids = [c.strip() for c in clips if c.strip()]
    else:
      clip_ids = folder_clips(features, layout)
    if not clip_ids:
      raise InputError(
          f"features folder {features!r} holds no clip (.npy files): extract features first."
      )
    npz_arrays = None
  else:
    if clips or clip_list:
      raise InputError(
          "--clips and --clip_list select clips of a features folder, not of an .npz file."
      )
    clip_ids, npz_arrays = _load_npz(features, config)
    if not clip_ids:
      raise InputError(f"--features {features!r} holds no clip.")
  if len(set(clip_ids)) != len(clip_ids):
    raise InputError("the clip list names a clip more than once: give each clip once.")
  wanted_plots = list(plot_clips) if plot_clips else clip_ids[: max(plot_max, 0)]
  unknown = [c for c in wanted_plots if c not in set(clip_ids)]  # checked only when plotting
  if (plot or plot_dir) and unknown:
    raise InputError(
        f"plot_clips names clips that are not parsed: {unknown[:5]}: pick ids among the parsed clips."
    )
  plotted: dict[str, dict[str, Any]] = {}
  npz_rows = {clip: row for row, clip in enumerate(clip_ids)}
  plot_set = set(wanted_plots) if (plot or plot_dir) else set()

  def load_batch(ids: Sequence[str], loaders: concurrent.futures.Executor) -> dict[str, np.ndarray]:
    if npz_arrays is not None:
      rows = [npz_rows[c] for c in ids]
      return {key: value[rows] for key, value in npz_arrays.items()}
    loaded = list(loaders.map(lambda c: features_lib.load_clip(features, layout, "pooled", c), ids))
    return {key: np.stack([clip[key] for clip in loaded]) for key in loaded[0]}

  source = provenance.parse_record(
      parser, threshold, gate_threshold, synthetic_data if npz_arrays is None else None
  )
  size = min(batch_size, len(clip_ids))
  batches = [clip_ids[i : i + size] for i in range(0, len(clip_ids), size)]
  write, close = _write_json_records(out)
  num_events = 0
  bar = tqdm.tqdm(
      total=len(clip_ids),
      unit="clip",
      disable=None if progress is None else not progress,
      file=sys.stderr,
      dynamic_ncols=True,
  )
  try:
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=4
    ) as loaders:  # a batch's clips in parallel
      read = lambda ids: load_batch(ids, loaders)
      for ids, probs in inference.predict_batches(parser.predict, read, batches, size):
        events = events_lib.events_from_probabilities(probs, thresholds, gates)
        labels = events_lib.video_labels(probs, gates)
        for clip, clip_events, clip_labels in zip(ids, events, labels):
          write(
              {
                  "clip": clip,
                  "events": clip_events,
                  "video_labels": clip_labels,
                  "provenance": source,
              }
          )
          num_events += len(clip_events)
          if clip in plot_set:
            plotted[clip] = {"clip": clip, "events": clip_events, "truth": None}
        bar.update(len(ids))
  finally:
    bar.close()
    close()
  written = [out]
  if plot or plot_dir:
    for clip, entry in plotted.items():
      if clip in truth_table:
        entry["truth"] = events_lib.extract_events(*(x[None] for x in truth_table[clip]))[0]
    ordered = [plotted[c] for c in wanted_plots]
    note = "SYNTHETIC features" if synthetic_data else os.path.basename(os.path.normpath(features))
    if plot:
      model = f"{config.model.encoder}/{config.model.decoder} ({os.path.basename(os.path.normpath(checkpoint))})"
      timelines.plot_timelines(plot, ordered, title=title or f"{note}; model {model}")
      written.append(plot)
    if plot_dir:
      for entry in ordered:
        timelines.plot_timelines(
            os.path.join(plot_dir, f"{entry['clip']}.png"), [entry], title=title or note
        )
      written.append(f"{len(ordered)} PNGs in {plot_dir}")
  return f"parsed {len(clip_ids)} clips ({num_events} events) with {parser.source}: wrote {', '.join(written)}"
