"""Facts of the official AVVP code that the models and the LLP task both follow (so models import no task).

THRESHOLD: the official cut of segment and video-level probabilities (YapengTian/AVVP-ECCV20
`main_avvp.py:eval`: `o = (output >= 0.5)`, `Pa = (Pa >= 0.5) * np.repeat(o, ...)`; jasongief/LEAP's
`global_prob` union of the thresholded audio and visual predictions too).
"""

THRESHOLD = 0.5
