"""Figure for the docs: the real apical four-chamber cine next to the classic and the realistic phantom.

    python docs/make_phantom_vs_real.py   ->  docs/images/phantom_vs_real.png

Columns: the ultrasound cine that ships with pydicom (cropped to its fan and resized to 112x112
as EchoNet-Dynamic does), the classic phantom and the realistic phantom (patient 0 of seed 0 at
112x112, both styles of the same patient), each at end-diastole (top) and end-systole (bottom).
The real ED/ES frames are the largest and smallest dark-cavity frames of its first beat (by eye:
frames 0 and 10). Phantom ES panels show the 40 keypoints (red: image-left, cyan: image-right).
"""

import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pydicom.examples
from skimage.transform import resize

from echokdm.data.phantom import sample_patient, simulate_clip
from echokdm.io.dispatch import read_cine

REAL_ED, REAL_ES = 0, 10

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    real = read_cine(pydicom.examples.get_path("ybr_color"), "dicom", crop_to_fan=True)
real_frames = [resize(real.frames[t], (112, 112), anti_aliasing=True) for t in (REAL_ED, REAL_ES)]
patient = sample_patient(0, 0)
classic = simulate_clip(patient, n_beats=1, fps=50, size=112, decorrelation=0.03, seed=0)
realistic = simulate_clip(patient, n_beats=1, fps=50, size=112, seed=0, style="realistic")

fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
for col, (name, clip) in enumerate([("real A4C (pydicom)", None), ("classic phantom", classic),
                                    ("realistic phantom", realistic)]):
    for row, phase in enumerate(("ED", "ES")):
        ax = axes[row, col]
        if clip is None:
            ax.imshow(real_frames[row], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name}, {phase}", fontsize=9)
        else:
            t = int(clip.ed_frames[0] if phase == "ED" else clip.es_frames[0])
            ax.imshow(clip.frames[t], cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name}, {phase} (EF {clip.ef:.0f}%)", fontsize=9)
            if phase == "ES":
                kp = clip.keypoints[t]
                ax.plot(kp[:20, 0], kp[:20, 1], ".", ms=2, color="tab:red")
                ax.plot(kp[20:, 0], kp[20:, 1], ".", ms=2, color="tab:cyan")
        ax.axis("off")
fig.tight_layout()
out = Path(__file__).parent / "images" / "phantom_vs_real.png"
fig.savefig(out, dpi=110)
print(f"saved {out}")
