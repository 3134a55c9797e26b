"""docs/configuration.md's reference is the table rendered from the schema's Field descriptions."""

from podium.config import Config, reference

from conftest import REPO


def test_readme_config_table_matches_the_schema():
    assert reference.table_in(REPO / "docs" / "configuration.md") == reference.config_table(), (
        "docs/configuration.md's config table is out of date: run "
        "`.venv/bin/python -m podium.config.reference --write docs/configuration.md`")


def test_every_key_has_a_description_and_one_row():
    rows = list(reference.keys())
    assert [key for key, _, meaning in rows if not meaning.strip()] == []
    assert len({key for key, _, _ in rows}) == len(rows)
    assert {"seed", "train.channels_last", "train.ema_decay", "predict.batch_size", "metric"} <= {k for k, _, _ in rows}
    # Every section is walked: as many rows as leaf fields.
    sections = [f.annotation for f in Config.model_fields.values() if reference._section(f.annotation)]
    leaves = len(Config.model_fields) - len(sections) + sum(len(s.model_fields) for s in sections)
    assert len(rows) == leaves


def test_defaults_read_as_yaml():
    table = reference.config_table()
    for row in ("| `folds.group_column` | null |", "| `data.cache` | false |", "| `resize.enabled` | true |",
                "| `augment.train` | [{name: Resize}] |", "| `scheduler.lr_min` | 1e-5 |",
                "| `augment.mean` | auto |", "| `train.lr` | 0.002 (with pretrained weights: 0.0005) |",
                "| `data.dir` | data/demo |",
                "| `scheduler.name` | cosine_restarts (with pretrained weights: cosine) |"):
        assert row in table


def test_write_replaces_only_the_table(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\ntext above\n\n{reference.BEGIN}\n| old | table |\n{reference.END}\n\ntext below\n")
    assert reference.main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# title\n\ntext above\n\n" + reference.BEGIN + "\n")
    assert text.endswith(reference.END + "\n\ntext below\n")
    assert reference.table_in(readme) == reference.config_table()
    assert reference.main(["--write", str(readme)]) == 0 and readme.read_text() == text
    assert "already up to date" in capsys.readouterr().out
    assert reference.main([]) == 0
    assert capsys.readouterr().out == reference.config_table()


def test_write_without_markers_is_an_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert reference.main(["--write", str(readme)]) == 1
    assert "config-table:begin" in capsys.readouterr().err and readme.read_text() == "# no markers\n"
