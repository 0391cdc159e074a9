"""Docs that stay true: every trial count (and epoch count) the docs and the study headers state
beside a study file is what `spectral-study validate` says, and the wall time of `make
reproduce` is stated in README.md and restated word for word only in docs/results/REPRODUCTION.md."""
import re
from pathlib import Path

import pytest

from spectral_study.study import load_study

REPO = Path(__file__).resolve().parent.parent
STUDIES = {path.name: path for path in (REPO / "studies").glob("*.yaml")}
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
TRIALS = re.compile(r"(\d+)(?: [A-Za-z-]+){0,2} trials\b")
EPOCHS = re.compile(r"(\d+) epochs\b")
DURATION = re.compile(r"\b\d+(?:[-–]\d+)? ?(?:min|minutes|hours?)\b|\ban hour\b", re.I)


def _spec(name: str):
    return load_study(STUDIES[name])


def _claims():
    """(page:line, study file, trial counts stated, epoch counts stated) for every line of the
    docs that names a shipped study and states a number of trials."""
    for page in PAGES:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            named = [name for name in re.findall(r"([\w.-]+\.yaml)", line) if name in STUDIES]
            counts = [int(n) for n in TRIALS.findall(line)]
            if named and counts:
                epochs = [int(n) for n in EPOCHS.findall(line)]
                for name in named:
                    yield f"{page.relative_to(REPO)}:{number}", name, counts, epochs


CLAIMS = list(_claims())


def test_the_docs_state_trial_counts():
    pages = {where.split(":")[0] for where, *_ in CLAIMS}
    assert {"README.md", "docs/studies.md", "docs/cluster.md"} <= pages
    assert {name for _, name, _, _ in CLAIMS} == set(STUDIES)  # docs/studies.md lists every study


@pytest.mark.parametrize("where, name, counts, epochs", CLAIMS, ids=[f"{w}-{n}" for w, n, _, _ in CLAIMS])
def test_a_count_beside_a_study_is_what_validate_says(where, name, counts, epochs):
    spec = _spec(name)
    assert spec.trial_count() in counts, f"{where}: {name} runs {spec.trial_count()} trials, not {counts}"
    if epochs:
        assert spec.base.epochs in epochs, f"{where}: {name} trains {spec.base.epochs} epochs, not {epochs}"


@pytest.mark.parametrize("name", sorted(STUDIES))
def test_a_study_header_states_its_own_trial_count(name):
    header = []
    for line in STUDIES[name].read_text().splitlines():
        if not line.startswith("#"):
            break
        header.append(line.lstrip("# "))
    counts = [int(n) for n in TRIALS.findall(" ".join(header))]
    assert all(n == _spec(name).trial_count() for n in counts), f"{name}: header says {counts}"


def _reproduce_time() -> str:
    """README's figure for `make reproduce`: "about <duration> (<seconds> s)"."""
    readme = (REPO / "README.md").read_text()
    anchored = readme.split('<a id="reproduce-time"></a>', 1)
    assert len(anchored) == 2
    figure = re.search(r"about [^()]*\(\d+ s\)", " ".join(anchored[1].split("\n\n", 1)[0].split()))
    assert figure and DURATION.search(figure.group()), "README#reproduce-time states no measured figure"
    return figure.group()


def test_make_reproduce_s_wall_time_is_stated_in_the_readme_and_restated_only_in_the_report():
    figure = _reproduce_time()
    report = REPO / "docs" / "results" / "REPRODUCTION.md"
    assert figure in " ".join(report.read_text().split()), f"REPRODUCTION.md does not restate {figure!r}"
    for page in [*PAGES, REPO / "Makefile", *STUDIES.values()]:
        for paragraph in re.split(r"\n\s*\n", page.read_text()):
            if 'id="reproduce-time"' in paragraph:
                continue
            text = " ".join(line.strip().lstrip("#") for line in paragraph.splitlines())
            for sentence in re.split(r"(?<=\.) |\|", text):
                if "make reproduce" in sentence.lower():
                    said = sentence.lower().split("make reproduce", 1)[1]  # a study's own time may come before
                    if page == report and figure.lower() in said:
                        continue  # the report restates README's figure word for word
                    assert not DURATION.search(said), f"{page.relative_to(REPO)} restates it: {sentence.strip()}"
    makefile = (REPO / "Makefile").read_text()
    comment = makefile.split("\nreproduce:", 1)[0].rsplit("\n\n", 1)[1]  # the block above the target
    assert not DURATION.search(comment), comment
