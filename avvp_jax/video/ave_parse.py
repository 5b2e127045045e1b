"""Videos in, audio-visual events out, with an AVE localizer: the AVE counterpart of `avvp_jax.video.parse`.

`parse_video(checkpoint, paths)` (what `launch/parse_video.py` runs for an AVE checkpoint). Per video:

  1. `ave_frames.iter_native_windows` cuts it into 10-s windows of native frames; `ave_extract.video_features`
     gives each window's VGGish `[10, 128]` and VGG-19 pool5 `[10, 7, 7, 512]` (AVE's released layout);
  2. the localizer (`avvp_jax.load_localizer`) gives each window's `segment_class` by the model's official
     decision rule (`avvp_jax.tasks.ave.decisions`): one label per second, an event class or background;
  3. the windows' seconds are laid end to end, those past the video's end dropped, and each run of seconds
     with the same event class is one audio-visual event (background gives none), onsets and offsets in
     seconds of the video. An event crossing a window boundary is one event.

AVE has one track: an event is audible and visible at once ("modality": "audio-visual"). Its "score" is the
mean over the event's seconds of the model's probability of its class where the model gives per-second
probabilities (`segment_prob`: A+V-att, DMRN, PSP), else None (CMBS, the weak models).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from avvp_jax import provenance
from avvp_jax.errors import InputError
from avvp_jax.tasks.ave import annotations
from avvp_jax.tasks.ave import inference
from avvp_jax.tasks.llp import timelines
from avvp_jax.video import ave_extract
from avvp_jax.video import decode
from avvp_jax.video import parse as llp_parse

MODALITY = "audio-visual"


def checkpoint_task(path: str | os.PathLike[str]) -> str:
  """The task ("llp" or "ave") of the model in a workdir or checkpoint folder, from its saved config.

  Raises:
    InputError: `path` holds no checkpoint avvp_jax can read.
  """
  from avvp_jax import checkpoint  # pylint: disable=g-import-not-at-top  (orbax only when loading)

  path = os.path.abspath(os.path.expanduser(os.fspath(path)))
  config = checkpoint.checkpoint_config(checkpoint.resolve(path), None, None)
  return str(config.get("task", "llp"))


def video_events(
    segment_class: np.ndarray,
    segment_mask: np.ndarray,
    segment_prob: np.ndarray | None = None,
) -> list[dict[str, Any]]:
  """The audio-visual events of a whole video from its windows' second labels (step 3 of the docstring).

  Args:
    segment_class: int `[K, 10]`: 0-27 an event class, 28 background, per window and second.
    segment_mask: bool `[K, 10]`: the seconds inside the video.
    segment_prob: float `[K, 10, 29]` per-second class probabilities, or None.

  Returns:
    [{"modality": "audio-visual", "label", "onset", "offset", "score"}], in time order.
  """
  classes = np.asarray(segment_class).reshape(-1)
  valid = np.asarray(segment_mask, bool).reshape(-1)
  classes = np.where(valid, classes, annotations.BACKGROUND)
  probs = None if segment_prob is None else np.asarray(segment_prob).reshape(classes.size, -1)
  events, onset = [], 0
  for second in range(1, classes.size + 1):
    if second < classes.size and classes[second] == classes[onset]:
      continue
    label = int(classes[onset])
    if label != annotations.BACKGROUND:
      score = None if probs is None else float(np.mean(probs[onset:second, label]))
      events.append(
          {
              "modality": MODALITY,
              "label": annotations.CLASSES[label],
              "onset": int(onset),
              "offset": int(second),
              "score": score,
          }
      )
    onset = second
  return events


def parse_features(
    localizer: inference.Localizer, video: ave_extract.AveVideoFeatures
) -> dict[str, Any]:
  """The record of one video from its windows' AVE features.

  Returns:
    {"video", "duration_s", "num_windows", "has_audio", "events": [...], "windows": [{"start_s",
    "valid_seconds", "segment_labels": the 10 seconds' labels, "background" for background, None past the
    video's end}]}.
  """
  outputs = localizer.predict(video.features["audio"], video.features["visual"])
  segment_class = np.asarray(outputs["segment_class"])  # [K, 10]
  names = (*annotations.CLASSES, "background")
  seconds = segment_class.shape[1]
  return {
      "video": os.path.abspath(video.path),
      "duration_s": video.duration_s,
      "num_windows": video.num_windows,
      "has_audio": video.has_audio,
      "events": video_events(segment_class, video.segment_mask, outputs.get("segment_prob")),
      "windows": [
          {
              "start_s": k * seconds,
              "valid_seconds": int(np.sum(video.segment_mask[k])),
              "segment_labels": [
                  names[int(c)] if inside else None
                  for c, inside in zip(segment_class[k], video.segment_mask[k])
              ],
          }
          for k in range(video.num_windows)
      ],
  }


def parse_video(
    checkpoint: str | os.PathLike[str] | inference.Localizer,
    paths: Sequence[str | os.PathLike[str]],
    *,
    weights: str = "pretrained",
    weights_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    frame_batch: int = ave_extract.FRAME_BATCH,
    network: str = "torchvision",
    extractor: ave_extract.AveExtractor | None = None,
    plot: str | os.PathLike[str] | None = None,
    plot_dir: str | os.PathLike[str] | None = None,
    title: str | None = None,
    seed: int | None = None,
) -> list[dict[str, Any]]:
  """Parses videos into audio-visual events with an AVE localizer (module docstring); one record per video.

  Args:
    checkpoint: an AVE workdir or checkpoint folder (`inference.load_localizer`), or a loaded `Localizer`.
    paths: the video files.
    weights, weights_dir, download, frame_batch, network: the extractor's (`ave_extract.AveExtractor`;
      `network` the VGG-19 the model's training features came from); ignored when `extractor` is given.
    extractor: a loaded extractor to reuse.
    plot, plot_dir, title: as in `avvp_jax.video.parse.parse_video` (one audio-visual track per class).
    seed: for a multi-seed run, the replica to use (required there: AVE decisions are not averaged).

  Returns:
    Per video, `parse_features`'s record plus "features" (the weights), "audio" and "provenance".

  Raises:
    InputError: no video, a bad video, a checkpoint of an LLP model, a missing weight file.
  """
  if not paths:
    raise InputError("no video given: pass one or more video files.")
  if plot:
    timelines.plot_format(plot)
  paths = [os.fspath(path) for path in paths]
  for path in paths:  # a bad file fails before the model and the networks load
    decode.probe(path)
  localizer = (
      checkpoint
      if isinstance(checkpoint, inference.Localizer)
      else inference.load_localizer(checkpoint, seed=seed)
  )
  if extractor is None:
    extractor = ave_extract.AveExtractor(
        weights,
        weights_dir=weights_dir,
        download=download,
        frame_batch=frame_batch,
        network=network,
    )
  source = {
      "checkpoint": localizer.source,
      "vgg": extractor.network,
      "step": provenance.checkpoint_step(localizer.source),
      "seed": seed,
      "task": "ave",
      "decision": "the model's official segment decision (avvp_jax.tasks.ave.decisions)",
      "synthetic": False,
      **provenance.package(),
  }
  return llp_parse.parse_each_video(
      paths,
      lambda path: ave_extract.video_features(path, extractor),
      lambda video: parse_features(localizer, video),
      random=extractor.random,
      source=source,
      plot=plot,
      plot_dir=plot_dir,
      title=title,
      draw=lambda target, records, thumbnails, title: llp_parse.plot_video_timelines(
          target,
          records,
          thumbnails=thumbnails,
          title=title,
          classes=annotations.CLASSES,
          tracks=(MODALITY,),
      ),
  )
