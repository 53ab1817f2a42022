"""Training: settings, progress reports and the ``train`` entry point."""

from ml.training.progress import Progress, ProgressCallback
from ml.training.settings import TrainSettings
from ml.training.train import TrainedModel, fingerprint, train

__all__ = ["Progress", "ProgressCallback", "TrainSettings", "TrainedModel", "fingerprint", "train"]
