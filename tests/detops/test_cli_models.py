"""`detops models list`: published figures from the table, measured figures from real builds."""

import json

import models
from detops.cli import main


def test_json_lists_every_published_variant_with_its_figures(capsys):
    assert main(["models", "list", "--json", "--no-measure"]) == 0
    rows = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in rows]
    assert names == [n for n in models.VARIANTS if models.get_variant(n).published is not None]
    assert {"damo_yolo_t", "damo_yolo_l", "rtdetrv2_s", "rtdetrv2_x"} <= set(names)
    by_name = {r["name"]: r for r in rows}
    assert by_name["damo_yolo_t"]["published"]["params"] == 8_479_631
    assert by_name["rtdetrv2_x"]["published"]["gflops"] == 259
    assert all("measured" not in r for r in rows)


def test_measured_figures_come_from_the_built_model(capsys):
    assert main(["models", "list", "--json", "--variant", "damo_yolo_tiny", "--image-size", "128"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    model = models.build_model("damo_yolo_tiny")
    assert row["published"] is None
    assert row["measured"]["params"] == models.family_module("damo_yolo_tiny").count_params(model)
    assert row["measured"]["gflops"] > 0


def test_table_output_and_unknown_variant(capsys):
    assert main(["models", "list", "--no-measure"]) == 0
    assert "rtdetrv2_m" in capsys.readouterr().out
    assert main(["models", "list", "--variant", "nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_typer_exit_codes_reach_the_process(capsys):
    import typer

    from detops.cli import app

    @app.command("_exit-probe", hidden=True)
    def probe() -> None:
        raise typer.Exit(3)

    try:
        assert main(["_exit-probe"]) == 3
    finally:
        app.registered_commands.pop()


def _commands(group, prefix=()):
    import typer.main

    click_group = typer.main.get_command(group) if not hasattr(group, "commands") else group
    for name, command in click_group.commands.items():
        path = (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, path)
        else:
            yield path, command


def test_every_command_has_help(capsys):
    from detops.cli import app

    commands = dict(_commands(app))
    assert {("data", "synth"), ("data", "validate"), ("weights", "import"), ("train",), ("demo",)} <= set(
        commands
    )
    for path, command in commands.items():
        if command.hidden:
            continue
        assert (command.help or "").strip(), f"{path} has no docstring"
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "Usage:" in out and len(out.splitlines()) > 4, path


def _description(help_text: str) -> list[list[str]]:
    """The paragraphs (lists of lines) between a help text's ``Usage:`` line and its first section."""
    lines = help_text.splitlines()
    end = next(
        (i for i, line in enumerate(lines) if line.endswith(":") and not line[0].isspace()), len(lines)
    )
    paragraphs: list[list[str]] = [[]]
    for line in lines[1:end]:
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


def test_help_reads_as_plain_text(capsys, monkeypatch):
    """Every help text (groups too): no reST/Markdown backticks, and paragraphs wrapped by the formatter
    at the terminal width, not broken where the docstring's source lines end."""
    import textwrap

    import typer.main

    from detops.cli import app

    monkeypatch.setenv("COLUMNS", "80")  # click's help width: min(columns, 80) - 2

    def paths(command, prefix=()):
        yield prefix
        for name, sub in getattr(command, "commands", {}).items():
            if not sub.hidden:
                yield from paths(sub, (*prefix, name))

    checked = 0
    for path in paths(typer.main.get_command(app)):
        assert main([*path, "--help"]) == 0, path
        out = capsys.readouterr().out
        assert "`" not in out, (path, out)
        for lines in _description(out):
            text = " ".join(line.strip() for line in lines)
            assert lines == textwrap.wrap(text, 78, initial_indent="  ", subsequent_indent="  "), (path, out)
            checked += 1
    assert checked > 20
