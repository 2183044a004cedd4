"""Semi-supervised frameworks of the method, plain and quality-guided (docs/frameworks.md).

Each wraps the user's model(s): ``out = fw.step(labeled, unlabeled)`` returns named 0-dim
losses with the total in ``out["loss"]``; the caller backpropagates it, steps the
optimiser(s) over ``fw.models`` and calls ``fw.after_step()``.
"""

from qgfast.ssl.base import Framework, TeacherFramework
from qgfast.ssl.contrastive import ContrastiveConsistency
from qgfast.ssl.cps import CrossPseudoSupervision
from qgfast.ssl.ema import RampedDecay, WarmupDecay, ema_update, make_teacher
from qgfast.ssl.interpolation import InterpolationConsistency
from qgfast.ssl.mean_teacher import MeanTeacher, UncertaintyMeanTeacher
from qgfast.ssl.pseudo_label import PseudoLabel
from qgfast.ssl.ramps import ConstantRamp, LinearRamp, Ramp, SigmoidRamp
from qgfast.ssl.supervised import Supervised

__all__ = [
    "ConstantRamp",
    "ContrastiveConsistency",
    "CrossPseudoSupervision",
    "Framework",
    "InterpolationConsistency",
    "LinearRamp",
    "MeanTeacher",
    "PseudoLabel",
    "Ramp",
    "RampedDecay",
    "SigmoidRamp",
    "Supervised",
    "TeacherFramework",
    "UncertaintyMeanTeacher",
    "WarmupDecay",
    "ema_update",
    "make_teacher",
]
