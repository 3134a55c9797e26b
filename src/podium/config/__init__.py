"""The one typed config object, made once at the entry point and passed down.

`sections` holds each section's keys (`data` the competition's: data and folds), `schema` the
whole `Config`, `load` makes it from YAML and overrides, `reference` renders docs/configuration.md's
table from the descriptions.
"""

from podium.config.load import config_from_dict, config_hash, load_config
from podium.config.schema import Config

__all__ = ["Config", "config_from_dict", "config_hash", "load_config"]
