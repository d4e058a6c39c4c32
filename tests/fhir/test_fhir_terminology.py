"""Instrument tables and severity bands."""

import pytest

from careloop.fhir.terminology import (
    DIFFICULTY_ANSWERS,
    FREQUENCY_ANSWERS,
    RATING_INSTRUMENTS,
    SCORED_INSTRUMENTS,
    instrument_for_questionnaire,
    severity_band,
)


def test_instrument_codes_match_loinc() -> None:
    phq9, phq2, gad7 = (SCORED_INSTRUMENTS[k] for k in ("phq-9", "phq-2", "gad-7"))
    assert (phq9.panel.code, phq9.total.code) == ("44249-1", "44261-6")
    assert [i.code for i in phq9.items] == [
        "44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
        "44258-2", "44252-5", "44253-3", "44260-8",
    ]  # fmt: skip
    assert (phq2.panel.code, phq2.total.code) == ("55757-9", "55758-7")
    assert [i.code for i in phq2.items] == ["44250-9", "44255-8"]
    assert (gad7.panel.code, gad7.total.code) == ("69737-5", "70274-6")
    assert [i.code for i in gad7.items] == [
        "69725-0", "68509-9", "69733-4", "69734-2", "69735-9", "69689-8", "69736-7",
    ]  # fmt: skip
    assert phq9.difficulty is not None and phq9.difficulty.code == "69722-7"
    assert phq2.difficulty is None and gad7.difficulty is None
    assert (phq9.max_total, phq2.max_total, gad7.max_total) == (27, 6, 21)


def test_answer_lists() -> None:
    assert [(a.code, a.score) for a in FREQUENCY_ANSWERS] == [
        ("LA6568-5", 0), ("LA6569-3", 1), ("LA6570-1", 2), ("LA6571-9", 3),
    ]  # fmt: skip
    # LL359-1: "Very difficult" is LA6575-0 and "Extremely difficult" LA6574-3.
    assert {a.display: (a.code, a.score) for a in DIFFICULTY_ANSWERS} == {
        "Not difficult at all": ("LA6572-7", 0),
        "Somewhat difficult": ("LA6573-5", 1),
        "Very difficult": ("LA6575-0", 2),
        "Extremely difficult": ("LA6574-3", 3),
    }


@pytest.mark.parametrize(
    ("key", "total", "band"),
    [
        ("phq-9", 0, "minimal"),
        ("phq-9", 4, "minimal"),
        ("phq-9", 5, "mild"),
        ("phq-9", 9, "mild"),
        ("phq-9", 10, "moderate"),
        ("phq-9", 14, "moderate"),
        ("phq-9", 15, "moderately-severe"),
        ("phq-9", 19, "moderately-severe"),
        ("phq-9", 20, "severe"),
        ("phq-9", 27, "severe"),
        ("gad-7", 4, "minimal"),
        ("gad-7", 5, "mild"),
        ("gad-7", 10, "moderate"),
        ("gad-7", 15, "severe"),
        ("gad-7", 21, "severe"),
        ("phq-2", 2, "negative-screen"),
        ("phq-2", 3, "positive-screen"),
        ("phq-2", 6, "positive-screen"),
    ],
)
def test_severity_band_boundaries(key: str, total: int, band: str) -> None:
    assert severity_band(key, total).code == band


def test_bands_cover_every_total_exactly_once() -> None:
    for spec in SCORED_INSTRUMENTS.values():
        covered = [t for b in spec.bands for t in range(b.low, b.high + 1)]
        assert covered == list(range(spec.max_total + 1))


def test_severity_band_errors() -> None:
    with pytest.raises(ValueError):
        severity_band("phq-9", 28)
    with pytest.raises(ValueError):
        severity_band("gad-7", -1)
    with pytest.raises(KeyError):
        severity_band("bdi-ii", 3)


def test_questionnaire_canonicals() -> None:
    phq9 = SCORED_INSTRUMENTS["phq-9"]
    assert phq9.questionnaire == "https://careloop.io/fhir/Questionnaire/phq-9"
    assert instrument_for_questionnaire(phq9.questionnaire) is phq9
    assert instrument_for_questionnaire("http://loinc.org/q/44249-1") is phq9
    assert instrument_for_questionnaire("http://loinc.org/q/69737-5|2.74") is not None
    assert instrument_for_questionnaire("http://example.org/Questionnaire/phq-9") is None


def test_rating_instruments() -> None:
    assert {k: (r.minimum, r.maximum, r.integer) for k, r in RATING_INSTRUMENTS.items()} == {
        "mood": (0, 10, True),
        "anxiety": (0, 10, True),
        "sleep-quality": (0, 10, True),
        "sleep-duration": (0, 24, False),
    }
    sleep = RATING_INSTRUMENTS["sleep-duration"]
    assert (sleep.system, sleep.code, sleep.unit) == ("http://loinc.org", "93832-4", "h")
