"""Figure for the docs: a phantom frame next to a real apical four-chamber frame.

    python docs/make_phantom_vs_real.py   ->  docs/images/phantom_vs_real.png

The real frame is the ultrasound cine that ships with pydicom (cropped to its fan by motion and
resized to 112x112 as EchoNet-Dynamic does); the phantom is patient 0 of seed 0 at 112x112.
"""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pydicom.examples  # noqa: E402
from skimage.transform import resize  # noqa: E402

from echokdm.data.phantom import sample_patient, simulate_clip  # noqa: E402
from echokdm.io import read_dicom  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    real = read_dicom(pydicom.examples.get_path("ybr_color"), crop_to_fan=True)
real_frame = resize(real.frames[0], (112, 112), anti_aliasing=True)
clip = simulate_clip(sample_patient(0, 0), n_beats=1, fps=50, size=112, decorrelation=0.03, seed=0)
ed, es = int(clip.ed_frames[0]), int(clip.es_frames[0])

fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
panels = [(real_frame, "real A4C (pydicom example), 112x112"), (clip.frames[ed], f"phantom ED, EF {clip.ef:.0f}%"),
          (clip.frames[es], "phantom ES, keypoints")]
for ax, (img, title) in zip(axes, panels):
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
kp = clip.keypoints[es]
axes[2].plot(kp[:20, 0], kp[:20, 1], ".", ms=3, color="tab:red")
axes[2].plot(kp[20:, 0], kp[20:, 1], ".", ms=3, color="tab:cyan")
fig.tight_layout()
out = Path(__file__).parent / "images" / "phantom_vs_real.png"
fig.savefig(out, dpi=110)
print(f"saved {out}")
