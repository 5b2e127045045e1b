"""Videos in, events out: decode, extract the official-layout features, parse, and draw the timeline.

`parse_video(checkpoint, paths)` is `launch/parse_video.py` from Python. Per video:

  1. `decode.iter_windows` cuts it into 10-s windows (8-fps frames, 80 selected per window; 16-kHz audio);
  2. `extract.video_features` gives each window's VGGish, ResNet-152 and R(2+1)D-18 features;
  3. the trained model (`inference.load_parser`) gives each window's probabilities, as for an LLP clip;
  4. the windows' 0/1 second predictions (the official threshold rule, `events.segment_predictions`, each
     window gated by its own video-level probabilities) are laid end to end over the whole video, the
     seconds past its end dropped, and events are the runs of positive seconds (`events.extract_events`),
     so an event crossing a window boundary is one event. Onsets and offsets are seconds of the video.

A video without an audio track is parsed with the VGGish features of silence, and its record says so. The
model sees each window as one LLP clip; the padded seconds of the last window (zeros after the video's
end) are part of what it sees, and no event is reported in them.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np

from avvp_jax.tasks.llp import events as events_lib
from avvp_jax import inference
from avvp_jax import provenance
from avvp_jax import reporting
from avvp_jax.tasks.llp import metrics
from avvp_jax.tasks.llp import timelines
from avvp_jax.tasks.llp import annotations
from avvp_jax.tasks.llp import features as features_lib
from avvp_jax.errors import InputError
from avvp_jax.video import decode
from avvp_jax.video import extract
from avvp_jax.video import weights as weights_lib


def _check_parser(parser: inference.Parser) -> None:
  """The model must take the official layout: VGGish audio, ResNet-152 frames, and R(2+1)D-18 motion if it
  has a motion stream."""
  expected = features_lib.input_dims("official")
  dims = parser.input_dims
  if (dims["audio"], dims["frames"]) != (expected["audio"], expected["frames"]) or dims.get(
      "motion", 0
  ) not in (0, expected["motion"]):
    raise InputError(
        f"the checkpoint {parser.source} takes features of widths {dims}, but videos are extracted in "
        f"the official layout ({expected}): use a model trained on the official LLP features."
    )


def window_events(
    probs: dict[str, np.ndarray],
    segment_mask: np.ndarray,
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
) -> list[events_lib.Event]:
  """The events of a whole video from its windows' probabilities (step 4 of the module docstring).

  Args:
    probs: the model's outputs for the K windows (`segment_audio_prob` `[K, 10, C]`, ...).
    segment_mask: bool `[K, 10]`: the seconds inside the video.
    threshold, gate_threshold: as in `events.segment_predictions`.

  Returns:
    The events, onsets and offsets in seconds of the video (window k's second s is 10k + s).
  """
  pred_audio, pred_visual = events_lib.segment_predictions(probs, threshold, gate_threshold)
  num_windows, seconds, num_classes = pred_audio.shape
  valid = np.asarray(segment_mask, bool)[..., None]  # [K, 10, 1]
  flat = lambda x: np.asarray(x).reshape(1, num_windows * seconds, num_classes)
  return events_lib.extract_events(
      flat(pred_audio & valid),
      flat(pred_visual & valid),
      flat(probs["segment_audio_prob"]),
      flat(probs["segment_visual_prob"]),
  )[0]


def parse_features(
    parser: inference.Parser,
    video: extract.VideoFeatures,
    *,
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
    batch_size: int | None = None,
) -> dict[str, Any]:
  """The record of one decoded video from its windows' features (see the module docstring).

  Args:
    parser: the trained model.
    video: the video's window features (`extract.video_features`).
    threshold, gate_threshold: as in `inference.Parser.parse`.
    batch_size: windows per jitted call (the last call padded); None: all the video's windows in one call.

  Returns:
    {"video", "duration_s", "num_windows", "events": [...], "windows": [{"start_s", "valid_seconds",
    "video_labels"}]}; event onsets and offsets are seconds of the video.
  """
  features = video.features
  keys = ("audio", "frames", "motion") if parser.uses_motion else ("audio", "frames")
  num_windows, seconds = np.shape(video.segment_mask)
  size = num_windows if batch_size is None else min(batch_size, num_windows)
  starts = list(range(0, num_windows, size))
  read = lambda start: {key: np.asarray(features[key][start : start + size]) for key in keys}
  parts = [probs for _, probs in inference.predict_batches(parser.predict, read, starts, size)]
  probs = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}  # [W, ...]
  video_events = window_events(probs, video.segment_mask, threshold, gate_threshold)
  labels = events_lib.video_labels(probs, threshold if gate_threshold is None else gate_threshold)
  windows = [
      {
          "start_s": k * seconds,
          "valid_seconds": int(np.sum(video.segment_mask[k])),
          "video_labels": labels[k],
      }
      for k in range(num_windows)
  ]
  return {
      "video": os.path.abspath(video.path),
      "duration_s": video.duration_s,
      "num_windows": int(num_windows),
      "has_audio": video.has_audio,
      "events": video_events,
      "windows": windows,
  }


def parse_video(
    checkpoint: str | os.PathLike[str] | inference.Parser,
    paths: Sequence[str | os.PathLike[str]],
    *,
    weights: str = "pretrained",
    weights_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    frame_batch: int = 80,
    threshold: Any = metrics.OFFICIAL_THRESHOLD,
    gate_threshold: Any = None,
    extractor: extract.FeatureExtractor | None = None,
    plot: str | os.PathLike[str] | None = None,
    plot_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
  """Parses videos into events (see the module docstring); one record per video.

  Args:
    checkpoint: a workdir or checkpoint folder (`inference.load_parser`), or a loaded `Parser`.
    paths: the video files.
    weights, weights_dir, download, frame_batch: the feature extractor's (`extract.FeatureExtractor`);
      ignored when `extractor` is given.
    threshold, gate_threshold: as in `inference.Parser.parse`.
    extractor: a loaded extractor to reuse.
    plot: a timeline picture over each whole video, with frames along the top (.png, .pdf or .svg).
    plot_dir: a folder for one such PNG per video (`<video file stem>.png`).
    title: the pictures' title (the RANDOM WEIGHTS note is added when the features are random).
    seed: for a multi-seed checkpoint path, the replica to use; None: the seed ensemble
      (`inference.load_parser`).
    batch_size: windows per jitted call (`parse_features`); None: a video's windows in one call.

  Returns:
    Per video, `parse_features`'s record plus "features": the weights the features came from ("pretrained",
    or the RANDOM WEIGHTS note), "audio": how the audio track was used, and "provenance": what produced it
    (`avvp_jax.provenance.parse_record`: checkpoint, step, seeds, thresholds, package version and commit;
    "synthetic" false: real videos).

  Raises:
    InputError: no video, a bad video (missing, unreadable, no frames), a checkpoint that does not take
      official-layout features, a missing weight file.
  """
  if not paths:
    raise InputError("no video given: pass one or more video files.")
  if plot:
    timelines.plot_format(plot)
  paths = [os.fspath(path) for path in paths]
  for path in paths:  # a bad file fails before the model and the networks load
    decode.probe(path)
  if batch_size is not None and batch_size < 1:
    raise InputError(f"batch_size={batch_size} must be positive.")
  parser = (
      checkpoint
      if isinstance(checkpoint, inference.Parser)
      else inference.load_parser(checkpoint, seed=seed)
  )
  _check_parser(parser)
  if extractor is None:
    extractor = extract.FeatureExtractor(
        weights, weights_dir=weights_dir, download=download, frame_batch=frame_batch
    )
  source = provenance.parse_record(parser, threshold, gate_threshold, synthetic=False)
  return parse_each_video(
      paths,
      lambda path: extract.video_features(path, extractor),
      lambda video: parse_features(
          parser, video, threshold=threshold, gate_threshold=gate_threshold, batch_size=batch_size
      ),
      random=extractor.random,
      source=source,
      plot=plot,
      plot_dir=plot_dir,
      title=title,
      draw=lambda target, records, thumbnails, title: plot_video_timelines(
          target, records, thumbnails=thumbnails, title=title
      ),
  )


def parse_each_video(
    paths: Sequence[str],
    features_of: Callable[[str], Any],
    parse: Callable[[Any], dict[str, Any]],
    *,
    random: bool,
    source: dict[str, Any],
    plot: str | os.PathLike[str] | None,
    plot_dir: str | os.PathLike[str] | None,
    title: str | None,
    draw: Callable[..., Any],
) -> list[dict[str, Any]]:
  """The per-video loop of `parse_video` (and of AVE's, `ave_parse.parse_video`): each video's features
  (`features_of(path)`, with `thumbnails` and `has_audio`), its record (`parse(video)`) with "features",
  "audio" and "provenance" (`source`) added, a progress line per video, then the pictures:
  `draw(target, records, thumbnails, title)` for `plot` (all videos) and for each video in `plot_dir`
  (`<video file stem>.png`), the title marked when the features come from `random` weights."""
  records, thumbnails = [], []
  progress = reporting.VideoProgress(len(paths), logging.info)
  for path in paths:
    video = features_of(path)
    thumbnails.append(video.thumbnails)
    record = parse(video)
    record["features"] = weights_lib.RANDOM_WEIGHTS_NOTE if random else "pretrained"
    record["audio"] = (
        "the video's audio track" if video.has_audio else "none: the VGGish features of silence"
    )
    record["provenance"] = source
    records.append(record)
    progress.done(
        os.path.basename(path),
        f"{reporting.counted(record['num_windows'], 'window')}, "
        f"{reporting.counted(len(record['events']), 'event')}",
    )
  if random and (plot or plot_dir):
    title = f"{title or ''} [RANDOM WEIGHTS: the events mean nothing]".strip()
  if plot:
    draw(plot, records, thumbnails, title)
  if plot_dir:
    os.makedirs(plot_dir, exist_ok=True)
    for record, frames in zip(records, thumbnails):
      stem = os.path.splitext(os.path.basename(record["video"]))[0]
      draw(os.path.join(plot_dir, f"{stem}.png"), [record], [frames], title)
  return records


def plot_video_timelines(
    path: str | os.PathLike[str],
    records: Sequence[dict[str, Any]],
    *,
    thumbnails: Sequence[Sequence[tuple[float, np.ndarray]]] | None = None,
    title: str | None = None,
    classes: Sequence[str] | None = None,
    tracks: Sequence[str] = timelines.TRACKS,
) -> tuple[int, int]:
  """One timeline per parsed video over the whole video (`timelines.plot_timelines`), with `thumbnails`
  (per video, `extract.VideoFeatures.thumbnails`) along the top: as many as fit side by side. `classes` and
  `tracks` are the rows' vocabulary and the legend's modalities (LLP's by default; AVE's parse passes its
  28 classes and its one audio-visual track)."""
  num_seconds = max(r["num_windows"] * annotations.NUM_SECONDS for r in records)
  width_in = timelines.panel_width_in(num_seconds)
  panels = []
  for k, record in enumerate(records):
    panel = {"clip": os.path.basename(record["video"]), "events": record["events"], "truth": None}
    if classes is not None:
      panel["classes"] = tuple(classes)
    frames = thumbnails[k] if thumbnails else []
    if frames:
      height, width = frames[0][1].shape[:2]
      # Each thumbnail at its own aspect in the strip; every m-th so that neighbours do not overlap.
      span_s = timelines.THUMBNAIL_HEIGHT_IN * width / height * num_seconds / width_in
      gap_s = min((b[0] - a[0] for a, b in zip(frames, frames[1:])), default=span_s)
      every = max(1, int(np.ceil(span_s / max(gap_s, 1e-9))))
      panel["thumbnails"] = [(t, t + span_s, image) for t, image in frames[::every]]
    panels.append(panel)
  return timelines.plot_timelines(path, panels, title=title, num_seconds=num_seconds, tracks=tracks)


def write_records(records: Sequence[dict[str, Any]], out: str | os.PathLike[str]) -> str:
  """Writes the records as a JSON list to `out`; returns its absolute path."""
  out = os.path.abspath(os.path.expanduser(os.fspath(out)))
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, "w") as f:
    json.dump(list(records), f, indent=1)
  return out
