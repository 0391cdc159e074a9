"""Command-line overrides (spectral_study.study.overrides): applied before validation, checked by
the same rules, errors naming the override, recorded in the resolved study. No Ray."""
import pytest
import yaml

from spectral_study.study import StudyError, load_study, load_study_with, parse_study
from spectral_study.study.overrides import apply_overrides, override_spec, parse_override
from spectral_study.testing import write_study


def test_overrides_set_fields_by_dotted_path_values_read_as_yaml(tmp_path):
    path = write_study(tmp_path, "o")
    spec = load_study_with(path, ["training.epochs=1", "search.repeats=5", "model.widths=[64,256]",
                                  "training.lr=1e-3", "training.lr.dense=0.003"])
    assert spec.base.epochs == 1 and spec.search.repeats == 5
    assert spec.model.widths == ((64,), (256,))
    assert spec.rates.lr.for_mode("dense") == 0.003 and spec.rates.lr.for_mode("spectral-full") == 1e-3
    assert spec.trial_count() == 3 * 2 * 5
    assert spec == load_study_with(path, spec.overrides)  # deterministic


def test_a_later_override_wins_and_short_forms_extend(tmp_path):
    path = write_study(tmp_path, "o", scheduler="asha")
    spec = load_study_with(path, ["training.epochs=4", "training.epochs=2", "dataset.normalize=standard",
                                  "scheduler.grace_period=2"])
    assert spec.base.epochs == 2 and spec.base.normalize == "standard" and spec.base.dataset == "synthetic"
    assert spec.scheduler.type == "asha" and spec.scheduler.grace_period == 2


@pytest.mark.parametrize("override, message", [
    ("training.epochs=0", "command line: training.epochs=0: got 0; expected a positive integer"),
    ("training.epochs=three", "command line: training.epochs=three: got 'three'; expected a positive integer"),
    ("training.epoch=1", "command line: training.epoch=1: got unknown key 'epoch'; expected one of: "),
    ("model.widths=[64,-1]", "command line: model.widths=[64,-1]: model.widths[1]: got -1; expected a positive"),
    ("model.modes=[dense, spectral]", "command line: model.modes=[dense, spectral]: model.modes[1]: got 'spectral'"),
    ("epochs=1", "command line: epochs=1: got unknown key 'epochs'"),
    ("name=a b", "command line: name=a b: got 'a b'; expected a name of letters"),
    ("training.epochs", "command line: 'training.epochs': expected KEY=VALUE"),
    ("=1", "command line: '=1': expected KEY=VALUE"),
    ("model.widths=[64,", "command line: model.widths=[64,: the value is not valid YAML"),
    ("search.repeats.x=1", "command line: search.repeats.x=1: search.repeats is 1, not a mapping"),
])
def test_a_bad_override_is_one_line_naming_it(tmp_path, override, message):
    with pytest.raises(StudyError) as error:
        load_study_with(write_study(tmp_path, "o"), [override])
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_an_error_in_the_file_still_names_the_file(tmp_path):
    path = write_study(tmp_path, "o", model={"widths": [8, -16]})
    with pytest.raises(StudyError, match=rf"^{path}: model.widths\[1\]: got -16"):
        load_study_with(path, ["training.epochs=1"])


def test_the_resolved_study_holds_the_values_and_lists_the_overrides(tmp_path):
    spec = load_study_with(write_study(tmp_path, "o"), ["training.epochs=1", "model.widths=[64, 256]"])
    text = spec.to_yaml()
    first = text.splitlines()[0]
    assert first.startswith("#") and "training.epochs=1 model.widths=[64, 256]" in first
    again = parse_study(yaml.safe_load(text), "saved")
    assert again == spec and again.base.epochs == 1


def test_apply_overrides_leaves_the_mapping_alone():
    mapping = {"name": "x", "training": {"epochs": 3}}
    out = apply_overrides(mapping, [parse_override("training.epochs=1"), parse_override("model.bias=false")])
    assert mapping == {"name": "x", "training": {"epochs": 3}}
    assert out == {"name": "x", "training": {"epochs": 1}, "model": {"bias": False}}


def test_override_spec_applies_to_a_loaded_study(tmp_path):
    spec = load_study(write_study(tmp_path, "o"))
    changed = override_spec(spec, ["search.repeats=2"])
    assert changed.search.repeats == 2 and changed.overrides == ("search.repeats=2",)
    assert override_spec(spec, []) is spec
