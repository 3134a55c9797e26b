"""podium: folds -> train -> out-of-fold score -> checked submission."""

import os

# albumentations asks the network for a newer version on import unless this is set; an offline
# Kaggle kernel would wait on it. Set before anything can import albumentations.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
