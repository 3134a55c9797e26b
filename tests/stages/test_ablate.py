"""`make ablate`'s variants: each differs from the config in its one switch only, and with
pretrained weights one more variant puts the from-scratch recipe in place of the fine-tuning one."""

from podium.config import config_from_dict
from podium.config.schema import FINE_TUNING, Config
from podium.stages.ablate import OFF, SCRATCH_RECIPE, variants


def _differences(a: dict, b: dict, prefix: str = "") -> dict:
    out = {}
    for key in a.keys() | b.keys():
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out.update(_differences(a[key], b[key], f"{prefix}{key}."))
        elif a.get(key) != b.get(key):
            out[f"{prefix}{key}"] = b.get(key)
    return out


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        out.update(_leaves(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def _plain_default(dotted: str):
    """A key's from-scratch default: its section's field default."""
    section, key = dotted.split(".")
    return Config.model_fields[section].annotation.model_fields[key].default


def _changes(cfg) -> dict[str, dict]:
    base = cfg.model_dump(mode="json")
    return {name: {k: v for k, v in _differences(base, v.model_dump(mode="json")).items()
                   if k not in ("experiment", "runs_dir")}
            for name, v in variants(cfg).items()}


def test_each_variant_is_the_config_with_its_switch_and_nothing_else():
    changes = _changes(config_from_dict({}))
    assert set(changes) == {"none", "all", *(f"no_{t}" for t in OFF)}
    assert changes["all"] == {}
    for trick, off in OFF.items():
        assert changes[f"no_{trick}"] == _leaves(off)
    assert changes["none"] == {k: v for off in OFF.values() for k, v in _leaves(off).items()}


def test_with_weights_the_scratch_recipe_variant_undoes_the_fine_tuning_defaults_only():
    tuned = config_from_dict({"model": {"pretrained_file": "w.pth"}})
    changes = _changes(tuned)
    assert changes[SCRATCH_RECIPE] == {dotted: _plain_default(dotted) for dotted in FINE_TUNING}
    # a key the config set itself is the config's recipe, not the fine-tuning default: left alone
    own = config_from_dict({"model": {"pretrained_file": "w.pth"}, "train": {"lr": 0.01}})
    assert "train.lr" not in _changes(own)[SCRATCH_RECIPE]
    # every fine-tuning key set by the config, or no weights: no such variant
    everything = {"model": {"pretrained_file": "w.pth"}}
    for dotted in FINE_TUNING:
        section, key = dotted.split(".")
        everything.setdefault(section, {})[key] = _plain_default(dotted)
    assert SCRATCH_RECIPE not in variants(config_from_dict(everything))
    assert SCRATCH_RECIPE not in variants(config_from_dict({}))
