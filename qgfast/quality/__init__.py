"""The quality predictor g: model, training, evaluation and the guide used by SSL."""

from qgfast.quality.checkpoint import generator_from_checkpoint, load_predictor
from qgfast.quality.evaluate import evaluate_predictor
from qgfast.quality.guide import QualityGuide
from qgfast.quality.metrics import agreement
from qgfast.quality.model import QualityPredictor
from qgfast.quality.train import PredictorTrainConfig, train_predictor
from qgfast.quality.weak import train_weak_models

__all__ = [
    "PredictorTrainConfig",
    "QualityGuide",
    "QualityPredictor",
    "agreement",
    "evaluate_predictor",
    "generator_from_checkpoint",
    "load_predictor",
    "train_predictor",
    "train_weak_models",
]
