"""echokdm: echocardiography readers, LV keypoints and the Key-point guided Diffusion Model.

The package is layered (shared/DESIGN.md): :mod:`echokdm.io` reads and writes files with numpy
only; :mod:`echokdm.data` builds manifests and datasets on top of it; later layers add
geometry, transforms, models, pipelines, training and metrics. Importing :mod:`echokdm` is
cheap: nothing heavy (torch, pydicom) is imported until a submodule needs it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
