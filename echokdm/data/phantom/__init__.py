"""Synthetic apical four-chamber echo cine loops with exactly known ground truth.

The phantom is echokdm's demo data, its test data, and the one place where a flow estimate can
be checked against the truth. For each synthetic patient (:func:`sample_patient`) it simulates
(:func:`simulate_clip`) a B-mode cine whose LV blood-pool masks, 40 keypoints, Simpson volumes,
EF and dense motion are known exactly:

* :mod:`~echokdm.data.phantom.cycle`: the LV volume–time curve (ejection, relaxation, filling,
  diastasis, atrial kick) at the patient's heart rate and EF;
* :mod:`~echokdm.data.phantom.motion`: a smooth invertible material -> image map that keeps the
  cavity an exact bullet (half ellipse closed by the annulus plane) at every frame;
* :mod:`~echokdm.data.phantom.anatomy`: the tissue map (LV, RV, atria, walls, pericardium);
* :mod:`~echokdm.data.phantom.scanner`: scatterers imaged through a depth-dependent PSF on a
  polar grid, log compression and scan conversion into the sector;
* :mod:`~echokdm.data.phantom.look` and :mod:`~echokdm.data.phantom.realistic`: the optional
  ``"realistic"`` style (``sample_patient(seed, style="realistic")``), a domain-randomised look
  (dark blood, valves, clutter, dropout, vendor display and compression); ``"classic"`` is the
  default and unchanged;
* :mod:`~echokdm.data.phantom.clip`: :class:`PhantomClip`, exact flows in the shared/DESIGN.md
  convention, export to :class:`~echokdm.io.cine.Cine` and to ``.npz``.

Only numpy and scipy are used (no torch).
"""

from echokdm.data.phantom.clip import PhantomClip, SimulationSettings, load_npz, simulate_clip
from echokdm.data.phantom.cycle import cardiac_timing, volume_ratio
from echokdm.data.phantom.look import STYLES, RealisticLook
from echokdm.data.phantom.patient import PATIENT_RANGES, PhantomPatient, sample_patient, with_style

__all__ = [
    "PhantomPatient",
    "sample_patient",
    "with_style",
    "STYLES",
    "RealisticLook",
    "PATIENT_RANGES",
    "simulate_clip",
    "PhantomClip",
    "SimulationSettings",
    "load_npz",
    "cardiac_timing",
    "volume_ratio",
]
