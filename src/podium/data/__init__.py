"""The competition's files: its tables and targets (competition), decoding images (images), the
decode-once cache (cache), the torch Dataset with its augmentation pipelines (datasets), the
cross-validation split (splits) and the embedded demo competition (demo)."""
