"""Code systems, LOINC codes and instrument tables used by the mappings.

Questionnaire canonicals: careloop publishes its instruments as
``https://careloop.io/fhir/Questionnaire/{key}`` (e.g. ``.../phq-9``) and writes that canonical
into QuestionnaireResponse.questionnaire. Inbound responses may also use the LOINC-form style
``http://loinc.org/q/{panel}`` (e.g. ``http://loinc.org/q/44249-1``), with or without ``|version``.
Item linkIds are the LOINC item codes.
"""

from dataclasses import dataclass

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
SURVEY = "survey"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
PROVENANCE_PARTICIPANT_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
ORDINAL_VALUE_URL = "http://hl7.org/fhir/StructureDefinition/ordinalValue"

CARELOOP_FHIR = "https://careloop.io/fhir"
QUESTIONNAIRE_BASE = f"{CARELOOP_FHIR}/Questionnaire"
LOINC_QUESTIONNAIRE_BASE = "http://loinc.org/q"
SEVERITY_BAND_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/severity-band"
SYMPTOM_RATING_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/symptom-rating"
TELEHEALTH_MODALITY_SYSTEM = f"{CARELOOP_FHIR}/CodeSystem/telehealth-modality"
BUSINESS_IDENTIFIER_EXTENSION = f"{CARELOOP_FHIR}/StructureDefinition/business-identifier"
TELEHEALTH_PLATFORM_EXTENSION = f"{CARELOOP_FHIR}/StructureDefinition/telehealth-platform"


@dataclass(frozen=True)
class Concept:
    """A code with its display, in the system the context implies (LOINC for instruments)."""

    code: str
    display: str


@dataclass(frozen=True)
class AnswerOption:
    """One LOINC answer (LA code) with its ordinal score."""

    code: str
    display: str
    score: int


@dataclass(frozen=True)
class SeverityBand:
    """A score range and its interpretation code in ``SEVERITY_BAND_SYSTEM``."""

    code: str
    display: str
    low: int
    high: int


@dataclass(frozen=True)
class ChoiceItem:
    """A question answered from a LOINC answer list."""

    code: str
    text: str
    options: tuple[AnswerOption, ...]

    def option_for_score(self, score: int) -> AnswerOption:
        """The answer option whose ordinal score is ``score``."""
        for option in self.options:
            if option.score == score:
                return option
        raise ValueError(f"no answer scores {score}")

    def option_for_code(self, code: str) -> AnswerOption | None:
        """The answer option with LA code ``code``, or None."""
        return next((o for o in self.options if o.code == code), None)


@dataclass(frozen=True)
class ScoredInstrument:
    """A questionnaire whose item scores add up to a total with severity bands."""

    key: str
    title: str
    questionnaire: str
    panel: Concept
    total: Concept
    items: tuple[ChoiceItem, ...]
    answers: tuple[AnswerOption, ...]
    bands: tuple[SeverityBand, ...]
    difficulty: ChoiceItem | None = None

    @property
    def loinc_questionnaire(self) -> str:
        """The LOINC-form style canonical accepted on input."""
        return f"{LOINC_QUESTIONNAIRE_BASE}/{self.panel.code}"

    @property
    def min_score(self) -> int:
        """The lowest score of one item."""
        return min(a.score for a in self.answers)

    @property
    def max_score(self) -> int:
        """The highest score of one item."""
        return max(a.score for a in self.answers)

    @property
    def max_total(self) -> int:
        """The highest possible total."""
        return self.max_score * len(self.items)


@dataclass(frozen=True)
class RatingInstrument:
    """A single self-rating: ``system``/``code`` name it, the value lies in [minimum, maximum].

    Integer ratings map to ``valueInteger``; the others to ``valueQuantity`` in UCUM ``unit``.
    """

    key: str
    system: str
    code: str
    display: str
    minimum: float
    maximum: float
    integer: bool
    unit: str | None = None
    unit_display: str | None = None


FREQUENCY_ANSWERS = (
    AnswerOption("LA6568-5", "Not at all", 0),
    AnswerOption("LA6569-3", "Several days", 1),
    AnswerOption("LA6570-1", "More than half the days", 2),
    AnswerOption("LA6571-9", "Nearly every day", 3),
)

# LOINC answer list LL359-1; note the LA codes are not in score order.
DIFFICULTY_ANSWERS = (
    AnswerOption("LA6572-7", "Not difficult at all", 0),
    AnswerOption("LA6573-5", "Somewhat difficult", 1),
    AnswerOption("LA6575-0", "Very difficult", 2),
    AnswerOption("LA6574-3", "Extremely difficult", 3),
)

PHQ9_DIFFICULTY_CODE = "69722-7"
PHQ9_ITEM9_CODE = "44260-8"


def _items(*pairs: tuple[str, str]) -> tuple[ChoiceItem, ...]:
    return tuple(ChoiceItem(code, text, FREQUENCY_ANSWERS) for code, text in pairs)


_PHQ9_ITEMS = _items(
    ("44250-9", "Little interest or pleasure in doing things"),
    ("44255-8", "Feeling down, depressed, or hopeless"),
    ("44259-0", "Trouble falling or staying asleep, or sleeping too much"),
    ("44254-1", "Feeling tired or having little energy"),
    ("44251-7", "Poor appetite or overeating"),
    (
        "44258-2",
        "Feeling bad about yourself - or that you are a failure or have let yourself or your "
        "family down",
    ),
    (
        "44252-5",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
    ),
    (
        "44253-3",
        "Moving or speaking so slowly that other people could have noticed. Or the opposite - "
        "being so fidgety or restless that you have been moving around a lot more than usual",
    ),
    (
        PHQ9_ITEM9_CODE,
        "Thoughts that you would be better off dead, or of hurting yourself in some way",
    ),
)

_GAD7_ITEMS = _items(
    ("69725-0", "Feeling nervous, anxious or on edge"),
    ("68509-9", "Not being able to stop or control worrying"),
    ("69733-4", "Worrying too much about different things"),
    ("69734-2", "Trouble relaxing"),
    ("69735-9", "Being so restless that it is hard to sit still"),
    ("69689-8", "Becoming easily annoyed or irritable"),
    ("69736-7", "Feeling afraid as if something awful might happen"),
)

_PHQ9_DIFFICULTY = ChoiceItem(
    PHQ9_DIFFICULTY_CODE,
    "If you checked off any problems, how difficult have these problems made it for you to do "
    "your work, take care of things at home, or get along with other people?",
    DIFFICULTY_ANSWERS,
)

SCORED_INSTRUMENTS: dict[str, ScoredInstrument] = {
    "phq-9": ScoredInstrument(
        key="phq-9",
        title="Patient Health Questionnaire-9 (PHQ-9)",
        questionnaire=f"{QUESTIONNAIRE_BASE}/phq-9",
        panel=Concept("44249-1", "PHQ-9 quick depression assessment panel [Reported.PHQ]"),
        total=Concept(
            "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"
        ),
        items=_PHQ9_ITEMS,
        answers=FREQUENCY_ANSWERS,
        bands=(
            SeverityBand("minimal", "Minimal depression", 0, 4),
            SeverityBand("mild", "Mild depression", 5, 9),
            SeverityBand("moderate", "Moderate depression", 10, 14),
            SeverityBand("moderately-severe", "Moderately severe depression", 15, 19),
            SeverityBand("severe", "Severe depression", 20, 27),
        ),
        difficulty=_PHQ9_DIFFICULTY,
    ),
    "phq-2": ScoredInstrument(
        key="phq-2",
        title="Patient Health Questionnaire-2 (PHQ-2)",
        questionnaire=f"{QUESTIONNAIRE_BASE}/phq-2",
        panel=Concept("55757-9", "Patient Health Questionnaire 2 item (PHQ-2) [Reported]"),
        total=Concept(
            "55758-7", "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]"
        ),
        items=_PHQ9_ITEMS[:2],
        answers=FREQUENCY_ANSWERS,
        bands=(
            SeverityBand("negative-screen", "Negative depression screen", 0, 2),
            SeverityBand("positive-screen", "Positive depression screen", 3, 6),
        ),
    ),
    "gad-7": ScoredInstrument(
        key="gad-7",
        title="Generalized Anxiety Disorder-7 (GAD-7)",
        questionnaire=f"{QUESTIONNAIRE_BASE}/gad-7",
        panel=Concept("69737-5", "Generalized anxiety disorder 7 item (GAD-7)"),
        total=Concept(
            "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"
        ),
        items=_GAD7_ITEMS,
        answers=FREQUENCY_ANSWERS,
        bands=(
            SeverityBand("minimal", "Minimal anxiety", 0, 4),
            SeverityBand("mild", "Mild anxiety", 5, 9),
            SeverityBand("moderate", "Moderate anxiety", 10, 14),
            SeverityBand("severe", "Severe anxiety", 15, 21),
        ),
    ),
}

# LOINC has no code for a 0..10 app self-rating, so those are coded in careloop's own system.
RATING_INSTRUMENTS: dict[str, RatingInstrument] = {
    "mood": RatingInstrument(
        key="mood",
        system=SYMPTOM_RATING_SYSTEM,
        code="mood",
        display="Self-rated mood (0 very low - 10 very good)",
        minimum=0,
        maximum=10,
        integer=True,
    ),
    "anxiety": RatingInstrument(
        key="anxiety",
        system=SYMPTOM_RATING_SYSTEM,
        code="anxiety",
        display="Self-rated anxiety (0 none - 10 extreme)",
        minimum=0,
        maximum=10,
        integer=True,
    ),
    "sleep-quality": RatingInstrument(
        key="sleep-quality",
        system=SYMPTOM_RATING_SYSTEM,
        code="sleep-quality",
        display="Self-rated sleep quality (0 very poor - 10 excellent)",
        minimum=0,
        maximum=10,
        integer=True,
    ),
    "sleep-duration": RatingInstrument(
        key="sleep-duration",
        system=LOINC,
        code="93832-4",
        display="Sleep duration",
        minimum=0,
        maximum=24,
        integer=False,
        unit="h",
        unit_display="h",
    ),
}


def scored_instrument(key: str) -> ScoredInstrument:
    """The scored instrument ``key``; KeyError if unknown."""
    return SCORED_INSTRUMENTS[key]


def instrument_for_questionnaire(canonical: str) -> ScoredInstrument | None:
    """The scored instrument a Questionnaire canonical (careloop or LOINC style) denotes."""
    url = canonical.split("|", 1)[0].rstrip("/")
    for instrument in SCORED_INSTRUMENTS.values():
        if url in (instrument.questionnaire, instrument.loinc_questionnaire):
            return instrument
    return None


def severity_band(instrument_key: str, total: int) -> SeverityBand:
    """The severity band of ``total`` on instrument ``instrument_key``.

    Raises KeyError for an unknown instrument and ValueError for a total outside its range.
    """
    for band in SCORED_INSTRUMENTS[instrument_key].bands:
        if band.low <= total <= band.high:
            return band
    raise ValueError(f"total outside the range of {instrument_key}")
