"""`vgg19.params_from_keras_h5` and the "caffe" preprocessing against Keras itself: the network of the released
AVE features (Keras's `VGG19`, `block5_pool`, `keras.applications.vgg19.preprocess_input`).

The oracle is `keras.applications.VGG19(weights=None, include_top=False)` with random kernels and biases; its
weights are written in the layout of Keras's published h5 (`save_weights` of Keras 2: a group per layer
holding a group of the same name with `kernel:0` and `bias:0`, the names listed in attributes), read back
by the port, and both networks run on the same uint8 frames (Keras's own `preprocess_input` on one side,
`ave_frames.normalize(..., "caffe")` on the other). Full VGG-19 depth at 32x32.
"""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

from absl.testing import absltest  # pylint: disable=g-import-not-at-top,wrong-import-position
import h5py
import keras
import numpy as np

from avvp_jax.errors import InputError
from avvp_jax.video import ave_frames
from avvp_jax.video import vgg19


def _keras_model(seed):
  keras.utils.set_random_seed(seed)
  model = keras.applications.VGG19(weights=None, include_top=False, input_shape=(32, 32, 3))
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if layer.name.startswith("block") and "conv" in layer.name:
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0.0, 0.1, bias.shape).astype(np.float32)])
  return model


def _write_keras2_h5(model, path):
  """The layout of Keras's published VGG-19 h5 (Keras 2 `save_weights`)."""
  with h5py.File(path, "w") as h5:
    names = [layer.name for layer in model.layers]
    h5.attrs["layer_names"] = [n.encode() for n in names]
    h5.attrs["backend"] = b"tensorflow"
    for layer in model.layers:
      group = h5.create_group(layer.name)
      weights = layer.get_weights()
      weight_names = [f"{layer.name}/{w}:0" for w in ("kernel", "bias")][: len(weights)]
      group.attrs["weight_names"] = [n.encode() for n in weight_names]
      for name, value in zip(weight_names, weights):
        group.create_dataset(name, data=value)


class KerasVGG19Test(absltest.TestCase):

  def test_port_with_keras_weights_matches_keras(self):
    model = _keras_model(0)
    path = os.path.join(tempfile.mkdtemp(), vgg19.KERAS_WEIGHT_FILE.name)
    _write_keras2_h5(model, path)
    frames = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    want = model.predict(
        keras.applications.vgg19.preprocess_input(frames.astype(np.float32)), verbose=0
    )
    variables = vgg19.params_from_keras_h5(path)
    got = np.asarray(vgg19.embed(variables, ave_frames.normalize(frames, "caffe")))
    self.assertEqual(got.shape, (2, 1, 1, 512))
    self.assertLess(float(np.max(np.abs(got - want)) / np.max(np.abs(want))), 1e-5)

  def test_caffe_normalisation_is_keras_preprocess_input(self):
    frames = np.random.default_rng(2).integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
    want = keras.applications.vgg19.preprocess_input(frames.astype(np.float32))
    np.testing.assert_allclose(ave_frames.normalize(frames, "caffe"), want, rtol=0, atol=1e-5)

  def test_wrong_file_is_one_line(self):
    path = os.path.join(tempfile.mkdtemp(), "other.h5")
    with h5py.File(path, "w") as h5:
      h5.create_group("block1_conv1").create_dataset("kernel:0", data=np.zeros((3, 3, 3, 8)))
    with self.assertRaisesRegex(InputError, r"'block1_conv1' kernel has shape \(3, 3, 3, 8\)"):
      vgg19.params_from_keras_h5(path)
    with open(path, "w") as f:
      f.write("not hdf5")
    with self.assertRaisesRegex(InputError, "cannot be opened as HDF5"):
      vgg19.params_from_keras_h5(path)


if __name__ == "__main__":
  absltest.main()
