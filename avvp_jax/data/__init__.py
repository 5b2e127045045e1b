"""LLP data: annotations (numpy only), feature layouts, the synthetic set and the tf.data pipeline.

Only `pipeline` and `tfds_llp` import TensorFlow; everything else here is numpy.
"""
