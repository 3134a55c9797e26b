"""The CLI's one table: every subcommand reaches a stage function that takes exactly the options
the subcommand parses (by name), and the Makefile calls only subcommands the table has."""

import inspect
import re

import pytest

from podium import cli
from podium.errors import PodiumError

from conftest import REPO


def _dest(option: cli.Option) -> str:
    return option.kwargs.get("dest") or option.flags[0].lstrip("-").replace("-", "_")


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_each_subcommand_reaches_a_stage_that_takes_its_options(name):
    command = cli.COMMANDS[name]
    function = cli._stage(command.target)
    params = inspect.signature(function).parameters
    wanted = [_dest(o) for o in command.options]
    assert set(wanted) <= set(params), (name, wanted, list(params))
    first = list(params)[0] if params else None
    if command.config:  # the config comes first, then the options by name
        assert first == "cfg" and first not in wanted
    required = {p for p, v in params.items() if v.default is inspect.Parameter.empty and p != "cfg"}
    assert required <= set(wanted), (name, required)
    if isinstance(command.target, str):
        assert function.__module__ == f"podium.stages.{command.target.split(':')[0]}"


def test_the_makefile_calls_only_subcommands_of_the_table():
    makefile = (REPO / "Makefile").read_text()
    called = set(re.findall(r"\$\(PODIUM\) ([a-z-]+)", makefile)) | set(re.findall(r"\$\(shell \$\(PODIUM\) ([a-z-]+)",
                                                                                     makefile))
    assert called and called <= set(cli.COMMANDS), called - set(cli.COMMANDS)


def test_folds_are_parsed_once_and_checked_against_the_config():
    assert cli.parse_folds("", 5) is None and cli.parse_folds(None, 5) is None
    assert cli.parse_folds("2, 0,2", 5) == [0, 2]
    with pytest.raises(PodiumError, match=r"FOLDS=0,7: fold\(s\) \[7\] do not exist \(folds.n_splits=5\)"):
        cli.parse_folds("0,7", 5)
    with pytest.raises(PodiumError, match="FOLDS=a: expected fold numbers"):
        cli.parse_folds("a", 5)
