"""make audit on a built competition with planted duplicates (exact, resized, with another label,
in test) and planted label flips: every planted one listed, nothing else; the groups file keeps
duplicates in one fold; data.drop_ids and data.relabel change training only."""

import shutil
from html.parser import HTMLParser

import cv2
import numpy as np
import pandas as pd
import pytest

from podium.data.duplicates import connected_groups, hamming, near_pairs, perceptual_hash
from podium.errors import PodiumError
from podium.runs import layout

from conftest import pattern_image, tiny_config

CLASSES = ("a", "b", "c")


def _image(kind: int, rng: np.random.Generator) -> np.ndarray:
    """The class's stripes over a random smooth shading of its own: every image a different picture
    to a perceptual hash, the class still plain to a small CNN."""
    stripes = pattern_image(kind, rng, size=32).astype(np.float64)
    shade = cv2.resize(rng.normal(0, 1, (4, 4)), (32, 32), interpolation=cv2.INTER_CUBIC) * 15
    return np.clip(stripes * 0.8 + 20 + shade, 0, 255).astype(np.uint8)


def _competition(root, n_train=90, n_test=30, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
    kinds = rng.permutation(np.arange(n_train) % 3)
    train = pd.DataFrame({"id": [f"r{i:03d}" for i in range(n_train)], "label": [CLASSES[k] for k in kinds]})
    for i, k in zip(train["id"], kinds, strict=True):
        cv2.imwrite(str(root / "train" / f"{i}.png"), _image(int(k), rng))
    test = pd.DataFrame({"id": [f"t{i:03d}" for i in range(n_test)]})
    for i in test["id"]:
        cv2.imwrite(str(root / "test" / f"{i}.png"), _image(int(rng.integers(3)), rng))
    return root, train, test


def _plant(root, train, test):
    """Duplicates and flips; returns (train, test, what was planted)."""
    img = lambda i: root / "train" / f"{i}.png"  # noqa: E731
    planted = {}
    # exact copies, same label: three, so that some pair lands in two folds
    for n, src in enumerate(("r000", "r001", "r002")):
        shutil.copy(img(src), root / "train" / f"copy{n}.png")
        train.loc[len(train)] = [f"copy{n}", train.set_index("id").loc[src, "label"]]
        planted[f"copy{n}"] = ("exact", src)
    # the same picture enlarged and re-encoded (JPEG bytes, another size): a near duplicate
    big = cv2.resize(cv2.imread(str(img("r003"))), (48, 48), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(root / "train" / "bigger.png"), cv2.GaussianBlur(big, (3, 3), 0))
    train.loc[len(train)] = ["bigger", train.set_index("id").loc["r003", "label"]]
    planted["bigger"] = ("near", "r003")
    # the same file under another label
    shutil.copy(img("r004"), root / "train" / "other_label.png")
    own = train.set_index("id").loc["r004", "label"]
    train.loc[len(train)] = ["other_label", next(c for c in CLASSES if c != own)]
    planted["other_label"] = ("exact", "r004")
    # a training image again in the test set
    shutil.copy(img("r005"), root / "test" / "t_copy.png")
    test.loc[len(test)] = ["t_copy"]
    planted["t_copy"] = ("exact", "r005")
    flips = ["r010", "r020", "r030"]
    for i in flips:
        at = train["id"] == i
        train.loc[at, "label"] = CLASSES[(CLASSES.index(train.loc[at, "label"].item()) + 1) % 3]
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    test.assign(label="a").to_csv(root / "sample_submission.csv", index=False)
    return planted, flips


def test_perceptual_hash_finds_the_same_picture_resized_and_not_different_ones(tmp_path):
    rng = np.random.default_rng(3)
    images = [_image(int(k), rng) for k in np.arange(40) % 3]
    for i, im in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), im)
    cv2.imwrite(str(tmp_path / "big.jpg"), cv2.resize(images[7], (80, 80), interpolation=cv2.INTER_LINEAR))
    hashes = np.array([perceptual_hash(tmp_path / f"{i}.png")[0] for i in range(40)]
                      + [perceptual_hash(tmp_path / "big.jpg")[0]], dtype=np.uint64)
    # brute force over every pair against the blocked search
    brute = [(i, j, int(bin(int(hashes[i]) ^ int(hashes[j])).count("1"))) for i in range(41) for j in range(i + 1, 41)]
    for limit in (0, 6, 20):
        assert near_pairs(hashes, limit, block=7) == [p for p in brute if p[2] <= limit]
    assert [(i, j) for i, j, _ in near_pairs(hashes, 6)] == [(7, 40)]
    assert hamming(hashes[:40, None], hashes[None, :40])[np.triu_indices(40, 1)].mean() > 20
    assert connected_groups(5, [(0, 3), (3, 4), (1, 2)]) == [[0, 3, 4], [1, 2]]


def _trained(tmp_path, **more):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loop import train_fold
    from podium.train.precision import resolve

    root, train, test = _competition(tmp_path / "comp")
    planted, flips = _plant(root, train, test)
    cfg = tiny_config(root, tmp_path / "runs", model={"name": "resnet10t"},
                      train={"epochs": 12, "image_size": 32, "lr": 0.005}, mix={"mixup_alpha": 0, "cutmix_alpha": 0},
                      audit={"suspects": 8}, **more)
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    for k in range(3):
        train_fold(cfg, k, layout.train_inputs(cfg, k, data_hash), speed=resolve(cfg, comp.num_outputs))
    return cfg, planted, flips


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.open = 0, []

    def handle_starttag(self, tag, attrs):
        self.images += tag == "img" and dict(attrs)["src"].startswith("data:image/jpeg;base64,")
        if tag not in ("img", "br", "meta"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open.pop() == tag, tag


@pytest.mark.slow  # trains three folds in this process
def test_audit_lists_every_planted_duplicate_and_flip_and_nothing_else(tmp_path, fresh_accelerate_state):
    from podium.stages.audit import run_audit
    from podium.stages.folds import run_folds

    cfg, planted, flips = _trained(tmp_path)
    counts = run_audit(cfg)
    table = pd.read_csv(cfg.run_dir / layout.AUDIT_CSV, dtype={"id": str})
    groups = table[table["kind"] != "suspect"]
    found = {frozenset(g["id"]): (g["kind"].iloc[0], g["flags"].fillna("").iloc[0]) for _, g in groups.groupby("group")}
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={"id": str}).set_index("id")["fold"]
    expected = {}
    for copy, (kind, source) in planted.items():
        members = frozenset({copy, source})
        flags = []
        if copy == "other_label":
            flags.append("conflicting_labels")
        if copy != "t_copy" and folds[copy] != folds[source]:
            flags.append("straddles_folds")
        if copy == "t_copy":
            flags.append("train_and_test")
        expected[members] = (kind, " ".join(flags))
    assert found == expected  # every planted group, its kind and flags, and no other group
    assert counts["straddles_folds"] >= 1  # the planted copies do straddle folds here
    suspects = table[table["kind"] == "suspect"]
    # the flips first, with the copy planted under another label (which is wrong too)
    assert len(suspects) == 8 and set(suspects["id"][:4]) == {*flips, "other_label"}, suspects[["id", "p_label"]]
    assert suspects["p_label"].is_monotonic_increasing
    page = (cfg.run_dir / layout.AUDIT_HTML).read_text()
    parser = _Page()
    parser.feed(page)
    assert parser.open == [] and parser.images == sum(len(g) for g in found) + 8
    for ident in [*planted, *flips]:
        assert f">{ident}<" in page

    # the audit's groups keep every duplicate in one fold
    grouped = cfg.model_copy(update={"folds": cfg.folds.model_copy(update={
        "strategy": "stratified_group", "group_column": "audit_group",
        "groups_csv": str(cfg.run_dir / layout.AUDIT_GROUPS_CSV)})})
    run_folds(grouped)
    new = pd.read_csv(layout.folds_csv(grouped), dtype={"id": str}).set_index("id")["fold"]
    assert len(new) == len(folds)
    for members in expected:
        train_members = [m for m in members if m in new.index]
        assert new[train_members].nunique() == 1, members


def test_drop_and_relabel_change_training_rows_only(tmp_path):
    from podium.stages.check import preflight
    from podium.stages.folds import run_folds
    from podium.train.loaders import build_loaders

    root, train, test = _competition(tmp_path / "comp")
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    test.assign(label="a").to_csv(root / "sample_submission.csv", index=False)
    pd.DataFrame({"id": ["r007"], "label": ["c" if train.loc[7, "label"] != "c" else "a"]}).to_csv(
        tmp_path / "fix.csv", index=False)
    cfg = tiny_config(root, tmp_path / "runs",
                      data={"drop_ids": ["r003", "r011"], "relabel": str(tmp_path / "fix.csv")})
    comp, data_hash = preflight(cfg)
    run_folds(cfg, comp)
    folds = pd.read_csv(layout.folds_csv(cfg), dtype={"id": str})
    assert sorted(folds["id"]) == sorted(train["id"])  # every row keeps its fold
    new_label = pd.read_csv(tmp_path / "fix.csv").loc[0, "label"]
    for k in range(3):
        data = build_loaders(cfg, comp, k, data_hash)
        valid = set(folds.loc[folds["fold"] == k, "id"])
        assert set(data.valid_df["id"]) == valid  # dropped rows are still validated
        assert set(data.train_df["id"]) == set(train["id"]) - valid - {"r003", "r011"}
        for frame, y, expect in ((data.train_df, data.train_loader.dataset.targets, new_label),
                                 (data.valid_df, data.valid_targets, train.loc[7, "label"])):
            at = np.flatnonzero(frame["id"].to_numpy() == "r007")
            if len(at):  # relabelled for training, its own label when validated
                assert comp.classes[int(y[at[0]])] == expect
    pd.DataFrame({"id": ["nope"]}).to_csv(tmp_path / "drop.csv", index=False)
    bad = tiny_config(root, tmp_path / "runs", data={"drop_ids": str(tmp_path / "drop.csv")})
    with pytest.raises(PodiumError, match=r"drop.csv: id\(s\) 'nope' are not in train_csv"):
        preflight(bad)
    pd.DataFrame({"id": ["r001"], "label": ["zebra"]}).to_csv(tmp_path / "fix2.csv", index=False)
    bad = tiny_config(root, tmp_path / "runs", data={"relabel": str(tmp_path / "fix2.csv")})
    with pytest.raises(PodiumError, match=r"fix2.csv: id\(s\) 'r001' have class\(es\) 'zebra'"):
        preflight(bad)


def test_a_groups_file_must_give_every_train_row_a_group(tmp_path):
    from podium.stages.folds import run_folds

    root, train, test = _competition(tmp_path / "comp", n_train=30, n_test=6)
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    test.assign(label="a").to_csv(root / "sample_submission.csv", index=False)
    groups = pd.DataFrame({"id": train["id"], "g": np.arange(len(train)) // 2})
    groups.iloc[1:].to_csv(tmp_path / "groups.csv", index=False)
    folds = {"strategy": "stratified_group", "group_column": "g", "groups_csv": str(tmp_path / "groups.csv")}
    cfg = tiny_config(root, tmp_path / "runs", folds=folds)
    with pytest.raises(PodiumError, match=r"groups.csv: no group for train id\(s\) 'r000'"):
        run_folds(cfg)
    groups.to_csv(tmp_path / "groups.csv", index=False)
    written = pd.read_csv(run_folds(cfg), dtype={"id": str}).set_index("id")["fold"]
    pairs = groups.assign(fold=written.loc[groups["id"]].to_numpy()).groupby("g")["fold"].nunique()
    assert (pairs == 1).all()  # each pair of rows in one fold
