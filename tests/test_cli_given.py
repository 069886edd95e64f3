"""The search is told which settings the user gave (command line or config file), so that a resume takes
every other one from the search it continues — an explicit default (register=true) included."""

from hyperflow.cli.parsing import parse


def test_search_invocation_names_the_settings_given(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("epochs: 3\n")
    inv = parse(["search", "resume=0123abcd", "register=true", f"config={config}"])
    assert inv.given == {"resume", "register", "epochs"}
    assert inv.search.register is True and inv.train.epochs == 3


def test_mlproject_parameters_left_at_their_defaults_are_not_given():
    inv = parse(["search", "data=digits", "max_evals=30", "strategy=random", "config="], from_mlproject=True)
    assert inv.given == {"strategy"}  # data, max_evals equal the defaults; an empty config= is no file
