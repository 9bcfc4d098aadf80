"""Generate the questionnaires from the data contract: XLSForms, the LimeSurvey mapping and LSS files.

    python -m rematch_pipeline.forms_builder forms/

writes, byte-identical on every run:

- ``municipality_questionnaire.xlsx`` and ``household_questionnaire.xlsx`` — XLSForms for
  KoboToolbox / ODK (sheets ``survey``, ``choices``, ``settings``), three label languages;
- ``limesurvey_mapping.csv`` — canonical field → LimeSurvey question code, type and answer codes;
- ``limesurvey_municipalities.lss`` and ``limesurvey_households.lss`` — LimeSurvey survey
  structures built from the same mapping.

Field names, kinds, required flags, ranges and code lists come from
:mod:`rematch_pipeline.schemas.contract`; LimeSurvey codes from
:mod:`rematch_pipeline.schemas.limesurvey_codes`. This module only adds what the contract does
not say: the wording in German, English and Ukrainian, and how each kind is asked.

Decisions (see forms/README.md):

- ``submission_id`` is a ``calculate`` of the form's own instance id (``meta/instanceID`` without
  ``uuid:``, frozen with ``once()`` so an edited submission keeps its id); Kobo's ``_uuid`` carries
  the same value for an unedited submission and is what the reader prefers.
- ``submitted_at`` is the XLSForm ``end`` metadata question named ``submitted_at``: the device
  time the form was last finalised, so the latest edit wins. ``now()`` in a calculate would be
  re-evaluated whenever the form is opened and is therefore not used.
- The ``members`` repeat holds the member fields except ``submission_id``: that is the join key
  the export supplies (``_parent_index`` / ``_submission__uuid``), not a question.
- ``household_ref`` is asked before consent: a refusal must still be counted per household and
  withdraw an earlier consent (validation does both by the household's pseudonym). Everything
  after ``consent_processing`` is relevant only with consent.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from xml.sax.saxutils import escape

import xlsxwriter

from rematch_pipeline.schemas import contract
from rematch_pipeline.schemas.contract import (
    HOUSEHOLD_FIELDS,
    MEMBER_FIELDS,
    MUNICIPALITY_FIELDS,
    STATE_BY_LAND,
    Field,
    Kind,
)

# (code, XLSForm language column name); the order is the order of label columns.
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("de", "Deutsch (de)"),
    ("en", "English (en)"),
    ("uk", "Українська (uk)"),
)
Text = tuple[str, str, str]  # de, en, uk

MUNICIPALITY_XLSX = "municipality_questionnaire.xlsx"
HOUSEHOLD_XLSX = "household_questionnaire.xlsx"
MAPPING_CSV = "limesurvey_mapping.csv"
MUNICIPALITY_LSS = "limesurvey_municipalities.lss"
HOUSEHOLD_LSS = "limesurvey_households.lss"

# Booleans are asked as yes/no so that exports carry the contract's yes/no encoding.
YES_NO_LIST = "yes_no"
YES_NO: tuple[str, ...] = ("yes", "no")

# Fixed workbook creation time: the files must be byte-identical on every run.
FIXED_TIME = dt.datetime(2025, 1, 1, 0, 0, 0)

AGS_REGEX = "^([0-9]{5}|[0-9]{8})$"
_AGS_ITEM = "([0-9]{5}|[0-9]{8})"
# Same rule as validation's PERIOD_PATTERN (tests check they agree), written without \d for XPath.
PERIOD_REGEX = "^[0-9]{4}-(0[1-9]|1[0-2])$"
EMAIL_REGEX = "^[^@ ]+@[^@ ]+[.][^@ ]+$"
CONSENT_FIELD = "consent_processing"
CONSENTED = "${consent_processing} = 'yes'"
REPEAT_NAME = "members"


# --------------------------------------------------------------------------------------------
# Wording. Keys are canonical field names and codes; a missing entry fails the build loudly.
# --------------------------------------------------------------------------------------------

_LABELS: dict[str, Text] = {
    # municipalities
    "municipality_id": ("Amtlicher Gemeindeschlüssel (AGS)", "Official municipality key (AGS)", "Офіційний ключ громади (AGS)"),
    "municipality_name": ("Name der Kommune", "Name of the municipality", "Назва громади"),
    "state": ("Bundesland", "Federal state", "Федеральна земля"),
    "intake_period": ("Aufnahmezeitraum", "Intake period", "Період прийому"),
    "latitude": ("Breitengrad des Verwaltungssitzes", "Latitude of the administration seat", "Широта адміністративного центру"),
    "longitude": ("Längengrad des Verwaltungssitzes", "Longitude of the administration seat", "Довгота адміністративного центру"),
    "capacity_persons": (
        "Wie viele Personen können Sie in diesem Zeitraum aufnehmen?",
        "How many people can you receive in this period?",
        "Скільки осіб ви можете прийняти в цей період?",
    ),
    "min_persons": (
        "Ab wie vielen Personen lohnt sich für Sie eine Aufnahme?",
        "What is the smallest intake you consider worthwhile (persons)?",
        "Яка найменша кількість осіб, яку вам доцільно прийняти?",
    ),
    "housing_units": ("Anzahl freier Wohnungen", "Number of available dwellings", "Кількість вільних помешкань"),
    "largest_unit_persons": (
        "Für wie viele Personen reicht die größte Wohnung?",
        "How many people does the largest dwelling fit?",
        "На скільки осіб розраховане найбільше помешкання?",
    ),
    "accessible_units": (
        "Davon rollstuhlgerechte Wohnungen",
        "Of these, wheelchair-accessible dwellings",
        "З них пристосовані для інвалідного візка",
    ),
    "pets_allowed": (
        "Sind Haustiere in den Wohnungen erlaubt?",
        "Are pets allowed in the dwellings?",
        "Чи дозволені домашні тварини в помешканнях?",
    ),
    "kita_places": ("Freie Kita-Plätze (1–5 Jahre)", "Free childcare places (ages 1–5)", "Вільні місця в дитсадку (1–5 років)"),
    "school_places_primary": (
        "Freie Grundschulplätze (6–10 Jahre)",
        "Free primary school places (ages 6–10)",
        "Вільні місця в початковій школі (6–10 років)",
    ),
    "school_places_secondary": (
        "Freie Plätze an weiterführenden Schulen (11–17 Jahre)",
        "Free secondary school places (ages 11–17)",
        "Вільні місця в середній школі (11–17 років)",
    ),
    "integration_course_places": (
        "Freie Plätze in Deutsch- und Integrationskursen",
        "Free places in German and integration courses",
        "Вільні місця на курсах німецької мови та інтеграції",
    ),
    "medical_care": (
        "Welche Versorgung ist in der Kommune erreichbar?",
        "Which specialised care can be reached within the municipality?",
        "Яка спеціалізована медична допомога доступна в громаді?",
    ),
    "shortage_sectors": (
        "In welchen Branchen gibt es offene Stellen oder Ausbildungsplätze?",
        "Which sectors have unfilled jobs or training places?",
        "У яких галузях є вільні робочі місця або місця для навчання?",
    ),
    "ukrainian_community": (
        "Gibt es vor Ort bereits eine ukrainische Gemeinschaft?",
        "Is there already a Ukrainian community?",
        "Чи є на місці українська громада?",
    ),
    "settlement_type": ("Art der Kommune", "Type of settlement", "Тип населеного пункту"),
    "public_transport": ("Anbindung an Bus und Bahn", "Public transport connections", "Сполучення громадським транспортом"),
    "notes": ("Anmerkungen", "Notes", "Примітки"),
    # households (contact_* are shared with municipalities; see _FORM_LABELS for the difference)
    "household_ref": (
        "Referenznummer Ihres Haushalts",
        "Your household's reference number",
        "Реєстраційний номер вашого домогосподарства",
    ),
    "consent_processing": (
        "Sind Sie mit der Verarbeitung Ihrer Angaben einverstanden, auch der Angaben zur Gesundheit?",
        "Do you agree to the processing of your answers, including health information?",
        "Чи погоджуєтеся ви на обробку ваших відповідей, зокрема відомостей про здоров’я?",
    ),
    "consent_followup": (
        "Dürfen wir Sie später für kurze Folgebefragungen kontaktieren?",
        "May we contact you later for short follow-up surveys?",
        "Чи можемо ми пізніше звернутися до вас для коротких повторних опитувань?",
    ),
    "current_address": ("Derzeitige Adresse", "Current address", "Поточна адреса"),
    "pets": ("Reisen Sie mit Haustieren?", "Are you travelling with pets?", "Чи подорожуєте ви з домашніми тваринами?"),
    "linked_household_refs": (
        "Referenznummern von Haushalten, die mit Ihnen zusammen untergebracht werden müssen",
        "Reference numbers of households that must be placed together with you",
        "Реєстраційні номери домогосподарств, які мають бути розміщені разом із вами",
    ),
    "family_ties_municipality_id": (
        "Wo in Deutschland lebt bereits enge Familie? (AGS)",
        "Where in Germany does close family already live? (AGS)",
        "Де в Німеччині вже живуть ваші близькі родичі? (AGS)",
    ),
    "family_ties_importance": (
        "Wie wichtig ist Ihnen die Nähe zu dieser Familie?",
        "How important is living near this family?",
        "Наскільки для вас важливо жити поруч із цими родичами?",
    ),
    "imp_jobs": (
        "Wie wichtig sind Ihnen Arbeitsmöglichkeiten?",
        "How important are job opportunities to you?",
        "Наскільки для вас важливі можливості працевлаштування?",
    ),
    "imp_schools_childcare": (
        "Wie wichtig sind Ihnen Schulen und Kinderbetreuung?",
        "How important are schools and childcare to you?",
        "Наскільки для вас важливі школи та догляд за дітьми?",
    ),
    "imp_medical_care": (
        "Wie wichtig ist Ihnen die medizinische Versorgung?",
        "How important is medical care to you?",
        "Наскільки для вас важлива медична допомога?",
    ),
    "imp_community": (
        "Wie wichtig ist Ihnen eine ukrainische Gemeinschaft vor Ort?",
        "How important is a Ukrainian community nearby to you?",
        "Наскільки для вас важлива українська громада поруч?",
    ),
    "imp_big_city": (
        "Wie wichtig ist Ihnen das Leben in einer Großstadt?",
        "How important is living in a big city to you?",
        "Наскільки для вас важливо жити у великому місті?",
    ),
    "imp_quiet_rural": (
        "Wie wichtig ist Ihnen ruhiges Wohnen auf dem Land?",
        "How important is quiet, rural living to you?",
        "Наскільки для вас важливе спокійне життя в сільській місцевості?",
    ),
    "imp_family_nearby": (
        "Wie wichtig ist Ihnen die Nähe zu Familie?",
        "How important is being near family to you?",
        "Наскільки для вас важливо бути поруч із родиною?",
    ),
    "preferred_municipality_ids": (
        "Wunschorte (bis zu 3 Gemeindeschlüssel)",
        "Preferred places (up to 3 municipality keys)",
        "Бажані місця (до 3 ключів громад)",
    ),
    "excluded_municipality_ids": (
        "Orte, an die Sie auf keinen Fall ziehen möchten (Gemeindeschlüssel)",
        "Places you will not move to (municipality keys)",
        "Місця, куди ви в жодному разі не переїдете (ключі громад)",
    ),
    # members
    "member_name": ("Vor- und Nachname", "First and last name", "Ім’я та прізвище"),
    "date_of_birth": ("Geburtsdatum", "Date of birth", "Дата народження"),
    "sex": ("Geschlecht", "Sex", "Стать"),
    "relation": (
        "Beziehung zur Hauptperson des Haushalts",
        "Relation to the head of the household",
        "Ким ця особа доводиться голові домогосподарства?",
    ),
    "languages": (
        "Welche Sprachen spricht die Person?",
        "Which languages does this person speak?",
        "Якими мовами розмовляє ця особа?",
    ),
    "german_level": ("Deutschkenntnisse", "Level of German", "Рівень німецької мови"),
    "education": ("Höchster Bildungsabschluss", "Highest level of education", "Найвищий рівень освіти"),
    "occupation_sector": ("Beruf oder Branche", "Occupation or sector", "Професія або галузь"),
    "wants_work": (
        "Möchte die Person in Deutschland arbeiten?",
        "Does this person want to work in Germany?",
        "Чи хоче ця особа працювати в Німеччині?",
    ),
    "medical_needs": (
        "Welche Versorgung braucht die Person regelmäßig?",
        "Which care does this person need regularly?",
        "Якої медичної допомоги ця особа потребує регулярно?",
    ),
    "wheelchair": (
        "Nutzt die Person einen Rollstuhl?",
        "Does this person use a wheelchair?",
        "Чи користується ця особа інвалідним візком?",
    ),
}

# Labels that differ between the two questionnaires (same canonical name, other audience).
_FORM_LABELS: dict[str, dict[str, Text]] = {
    "municipalities": {
        "contact_name": ("Ansprechperson (Name)", "Contact person (name)", "Контактна особа (ім’я)"),
        "contact_email": ("E-Mail der Ansprechperson", "Contact person's e-mail", "Електронна пошта контактної особи"),
        "contact_phone": ("Telefon der Ansprechperson", "Contact person's phone", "Телефон контактної особи"),
    },
    "households": {
        "contact_name": (
            "Name der Kontaktperson des Haushalts",
            "Name of the household's contact person",
            "Ім’я контактної особи домогосподарства",
        ),
        "contact_email": ("E-Mail-Adresse", "E-mail address", "Адреса електронної пошти"),
        "contact_phone": ("Telefonnummer", "Phone number", "Номер телефону"),
    },
}

_IMPORTANCE_HINT: Text = (
    "0 = nicht wichtig, 1 = etwas, 2 = wichtig, 3 = sehr wichtig",
    "0 = not important, 1 = a little, 2 = important, 3 = very important",
    "0 = не важливо, 1 = трохи, 2 = важливо, 3 = дуже важливо",
)
_AGS_HINT: Text = (
    "5 Ziffern (Kreis) oder 8 Ziffern (Gemeinde), mit führenden Nullen",
    "5 digits (district) or 8 digits (municipality), keep leading zeros",
    "5 цифр (район) або 8 цифр (громада), разом із нулями на початку",
)
_AGS_LIST_HINT: Text = (
    "Gemeindeschlüssel mit 5 oder 8 Ziffern, durch Leerzeichen getrennt",
    "Municipality keys of 5 or 8 digits, separated by spaces",
    "Ключі громад з 5 або 8 цифр, розділені пробілами",
)
_CODES_EMPTY_HINT: Text = (
    "Alles Zutreffende ankreuzen; leer lassen, wenn nichts davon zutrifft.",
    "Tick all that apply; leave empty if none.",
    "Позначте все, що підходить; залиште порожнім, якщо нічого.",
)

_HINTS: dict[str, Text] = {
    "municipality_id": _AGS_HINT,
    "intake_period": ("Monat im Format JJJJ-MM, z. B. 2025-07", "Month as YYYY-MM, e.g. 2025-07", "Місяць у форматі РРРР-ММ, напр. 2025-07"),
    "latitude": ("Dezimalgrad mit Punkt, z. B. 52.52", "Decimal degrees with a point, e.g. 52.52", "Десяткові градуси з крапкою, напр. 52.52"),
    "longitude": ("Dezimalgrad mit Punkt, z. B. 13.40", "Decimal degrees with a point, e.g. 13.40", "Десяткові градуси з крапкою, напр. 13.40"),
    "min_persons": ("0 = kein Minimum", "0 = no minimum", "0 = без мінімуму"),
    "housing_units": (
        "Jeder Haushalt bezieht eine eigene Wohnung.",
        "Each household uses one dwelling.",
        "Кожне домогосподарство займає одне помешкання.",
    ),
    "accessible_units": (
        "Sind in der Zahl der freien Wohnungen enthalten.",
        "Included in the number of available dwellings.",
        "Входять до загальної кількості вільних помешкань.",
    ),
    "medical_care": _CODES_EMPTY_HINT,
    "shortage_sectors": _CODES_EMPTY_HINT,
    "notes": (
        "Bitte keine personenbezogenen Daten von Geflüchteten eintragen (keine Namen, Geburtsdaten, Adressen oder Gesundheitsangaben).",
        "Please do not enter personal data of refugees (no names, dates of birth, addresses or health details).",
        "Будь ласка, не вказуйте персональних даних біженців (імен, дат народження, адрес чи відомостей про здоров’я).",
    ),
    "household_ref": ("Sie steht auf Ihren Unterlagen.", "It is printed on your papers.", "Він зазначений у ваших документах."),
    "consent_processing": (
        "Wenn Sie „Nein“ wählen, endet der Fragebogen hier und Ihr Haushalt wird nicht berücksichtigt.",
        "If you choose “No”, the questionnaire ends here and your household is not considered.",
        "Якщо ви оберете «Ні», анкета завершиться тут, і ваше домогосподарство не буде розглянуто.",
    ),
    "linked_household_refs": (
        "Zum Beispiel Verwandte, die mit Ihnen reisen. Mehrere Nummern durch Leerzeichen trennen.",
        "For example relatives travelling with you. Separate several numbers with spaces.",
        "Наприклад, родичі, які подорожують з вами. Кілька номерів розділяйте пробілами.",
    ),
    "family_ties_municipality_id": (
        "Gemeindeschlüssel mit 5 oder 8 Ziffern; leer lassen, wenn keine.",
        "Municipality key of 5 or 8 digits; leave empty if none.",
        "Ключ громади з 5 або 8 цифр; залиште порожнім, якщо таких немає.",
    ),
    **{name: _IMPORTANCE_HINT for name in contract.IMPORTANCE_FIELDS},
    "preferred_municipality_ids": _AGS_LIST_HINT,
    "excluded_municipality_ids": _AGS_LIST_HINT,
    "occupation_sector": (
        "Für Kinder und Personen ohne Beruf „Keine“ oder „Schüler/in, Student/in“ wählen.",
        "For children and people without an occupation choose “None” or “Pupil or student”.",
        "Для дітей і людей без професії оберіть «Немає» або «Учень чи студент».",
    ),
    "medical_needs": (
        "Nur die Kategorien ankreuzen, keine Diagnosen. Leer lassen, wenn nichts davon zutrifft.",
        "Tick the categories only, no diagnoses. Leave empty if none.",
        "Позначте лише категорії, без діагнозів. Залиште порожнім, якщо нічого.",
    ),
}

# Notes (no data; KoboToolbox leaves notes out of exports).
_NOTES: dict[str, Text] = {
    "intro_note": (
        "Vielen Dank! Ihre Angaben helfen, Ihrem Haushalt eine passende Kommune in Deutschland vorzuschlagen.",
        "Thank you! Your answers help us propose a suitable municipality in Germany for your household.",
        "Дякуємо! Ваші відповіді допоможуть запропонувати вашому домогосподарству відповідну громаду в Німеччині.",
    ),
    "consent_note": (
        "Wir verwenden Ihre Angaben nur, um Ihrem Haushalt eine Kommune vorzuschlagen. Dazu gehören auch "
        "Angaben zur Gesundheit (nur Kategorien, keine Diagnosen). Namen und Kontaktdaten werden getrennt und "
        "geschützt gespeichert. Die Teilnahme ist freiwillig; Sie können Ihre Einwilligung jederzeit widerrufen.",
        "We use your answers only to propose a municipality for your household. This includes health "
        "information (categories only, no diagnoses). Names and contact details are stored separately and "
        "protected. Taking part is voluntary; you can withdraw your consent at any time.",
        "Ми використовуємо ваші відповіді лише для того, щоб запропонувати вашому домогосподарству громаду. "
        "Це включає відомості про здоров’я (лише категорії, без діагнозів). Імена та контактні дані "
        "зберігаються окремо і під захистом. Участь добровільна; ви можете будь-коли відкликати згоду.",
    ),
    "consent_refused_note": (
        "Danke. Ohne Ihre Einwilligung fragen wir nichts weiter. Bitte senden Sie den Fragebogen jetzt ab.",
        "Thank you. Without your consent we ask nothing more. Please submit the questionnaire now.",
        "Дякуємо. Без вашої згоди ми більше нічого не запитуємо. Будь ласка, надішліть анкету зараз.",
    ),
    "importance_note": (
        "Wie wichtig ist Ihnen Folgendes? 0 = nicht wichtig, 3 = sehr wichtig.",
        "How important is the following to you? 0 = not important, 3 = very important.",
        "Наскільки для вас важливе таке? 0 = не важливо, 3 = дуже важливо.",
    ),
    "members_note": (
        "Bitte tragen Sie jede Person des Haushalts ein, auch sich selbst.",
        "Please add every person in the household, including yourself.",
        "Будь ласка, внесіть кожну особу домогосподарства, включно з собою.",
    ),
    "municipality_note": (
        "Angaben zum Aufnahmeangebot Ihrer Kommune für einen Aufnahmezeitraum. Bitte keine personenbezogenen "
        "Daten von Geflüchteten eintragen.",
        "Your municipality's offer for one intake period. Please do not enter personal data of refugees.",
        "Пропозиція вашої громади щодо прийому на один період. Будь ласка, не вказуйте персональних даних біженців.",
    ),
}
_REPEAT_LABEL: Text = ("Person im Haushalt", "Person in the household", "Особа в домогосподарстві")

_SECTOR_LABELS: dict[str, Text] = {
    "healthcare": ("Gesundheitswesen", "Healthcare", "Охорона здоров’я"),
    "elderly_care": ("Altenpflege", "Elderly care", "Догляд за літніми людьми"),
    "education": ("Bildung", "Education", "Освіта"),
    "it": ("IT", "IT", "ІТ"),
    "engineering": ("Ingenieurwesen", "Engineering", "Інженерія"),
    "construction": ("Bau", "Construction", "Будівництво"),
    "manufacturing": ("Produktion", "Manufacturing", "Виробництво"),
    "logistics": ("Logistik", "Logistics", "Логістика"),
    "hospitality": ("Gastgewerbe", "Hospitality", "Готельно-ресторанна справа"),
    "retail": ("Handel", "Retail", "Торгівля"),
    "agriculture": ("Landwirtschaft", "Agriculture", "Сільське господарство"),
    "public_admin": ("Öffentliche Verwaltung", "Public administration", "Державне управління"),
    "other": ("Andere", "Other", "Інше"),
}

# Choice labels per choice list (list names are the contract's constant names, lower-cased).
_CHOICE_LABELS: dict[str, dict[str, Text]] = {
    YES_NO_LIST: {"yes": ("Ja", "Yes", "Так"), "no": ("Nein", "No", "Ні")},
    "medical": {
        "general": ("Allgemeinmedizin", "General practice", "Сімейна медицина"),
        "pediatrics": ("Kinderheilkunde", "Paediatrics", "Педіатрія"),
        "psychotherapy": ("Psychotherapie", "Psychotherapy", "Психотерапія"),
        "gynecology": ("Frauenheilkunde", "Gynaecology", "Гінекологія"),
        "oncology": ("Krebsbehandlung (Onkologie)", "Cancer care (oncology)", "Онкологія"),
        "dialysis": ("Dialyse", "Dialysis", "Діаліз"),
        "diabetology": ("Diabetes-Behandlung", "Diabetes care", "Лікування діабету"),
        "cardiology": ("Herzmedizin (Kardiologie)", "Cardiology", "Кардіологія"),
        "disability_support": ("Unterstützung bei Behinderung", "Disability support", "Підтримка людей з інвалідністю"),
    },
    "sector": _SECTOR_LABELS,
    "occupation": {
        **_SECTOR_LABELS,
        "none": ("Keine (nicht berufstätig)", "None (not working)", "Немає (не працює)"),
        "student": ("Schüler/in, Student/in", "Pupil or student", "Учень чи студент"),
    },
    "states": {
        "DE-BW": ("Baden-Württemberg", "Baden-Württemberg", "Баден-Вюртемберг"),
        "DE-BY": ("Bayern", "Bavaria", "Баварія"),
        "DE-BE": ("Berlin", "Berlin", "Берлін"),
        "DE-BB": ("Brandenburg", "Brandenburg", "Бранденбург"),
        "DE-HB": ("Bremen", "Bremen", "Бремен"),
        "DE-HH": ("Hamburg", "Hamburg", "Гамбург"),
        "DE-HE": ("Hessen", "Hesse", "Гессен"),
        "DE-MV": ("Mecklenburg-Vorpommern", "Mecklenburg-Western Pomerania", "Мекленбург-Передня Померанія"),
        "DE-NI": ("Niedersachsen", "Lower Saxony", "Нижня Саксонія"),
        "DE-NW": ("Nordrhein-Westfalen", "North Rhine-Westphalia", "Північний Рейн-Вестфалія"),
        "DE-RP": ("Rheinland-Pfalz", "Rhineland-Palatinate", "Рейнланд-Пфальц"),
        "DE-SL": ("Saarland", "Saarland", "Саарланд"),
        "DE-SN": ("Sachsen", "Saxony", "Саксонія"),
        "DE-ST": ("Sachsen-Anhalt", "Saxony-Anhalt", "Саксонія-Ангальт"),
        "DE-SH": ("Schleswig-Holstein", "Schleswig-Holstein", "Шлезвіг-Гольштейн"),
        "DE-TH": ("Thüringen", "Thuringia", "Тюрингія"),
    },
    "community": {
        "none": ("Keine", "None", "Немає"),
        "small": ("Klein", "Small", "Невелика"),
        "large": ("Groß", "Large", "Велика"),
    },
    "settlement": {
        "big_city": ("Großstadt", "Big city", "Велике місто"),
        "city": ("Stadt", "City", "Місто"),
        "town": ("Kleinstadt", "Small town", "Містечко"),
        "rural": ("Ländlich", "Rural", "Сільська місцевість"),
    },
    "transport": {
        "good": ("Gut", "Good", "Добре"),
        "medium": ("Mittel", "Medium", "Середньо"),
        "poor": ("Schlecht", "Poor", "Погано"),
    },
    "tie_importance": {
        "none": ("Nicht wichtig", "Not important", "Не важливо"),
        "nice": ("Wäre schön", "Nice to have", "Було б добре"),
        "must": (
            "Unbedingt (nur dort oder im Umkreis von 50 km)",
            "Essential (only there or within 50 km)",
            "Обов’язково (лише там або в радіусі 50 км)",
        ),
    },
    "sex": {
        "female": ("Weiblich", "Female", "Жіноча"),
        "male": ("Männlich", "Male", "Чоловіча"),
        "diverse": ("Divers", "Diverse", "Інша"),
    },
    "relation": {
        "head": ("Hauptperson", "Head of household", "Голова домогосподарства"),
        "spouse": ("Ehe- oder Lebenspartner/in", "Spouse or partner", "Чоловік, дружина або партнер"),
        "child": ("Kind", "Child", "Дитина"),
        "parent": ("Elternteil", "Parent", "Батько або мати"),
        "sibling": ("Geschwister", "Sibling", "Брат або сестра"),
        "other": ("Andere", "Other", "Інше"),
    },
    "languages": {
        "uk": ("Ukrainisch", "Ukrainian", "Українська"),
        "ru": ("Russisch", "Russian", "Російська"),
        "pl": ("Polnisch", "Polish", "Польська"),
        "en": ("Englisch", "English", "Англійська"),
        "de": ("Deutsch", "German", "Німецька"),
        "other": ("Andere", "Other", "Інша"),
    },
    "german_level": {
        "none": ("Keine", "None", "Немає"),
        "A1": ("A1 – Anfänger", "A1 – beginner", "A1 – початковий"),
        "A2": ("A2 – Grundkenntnisse", "A2 – elementary", "A2 – елементарний"),
        "B1": ("B1 – Mittelstufe", "B1 – intermediate", "B1 – середній"),
        "B2": ("B2 – gute Mittelstufe", "B2 – upper intermediate", "B2 – вище середнього"),
        "C1": ("C1 oder höher", "C1 or higher", "C1 або вище"),
    },
    "education": {
        "none": ("Kein Abschluss", "No formal education", "Без освіти"),
        "school": ("Schulabschluss", "School", "Шкільна освіта"),
        "vocational": ("Berufsausbildung", "Vocational training", "Професійна освіта"),
        "university": ("Hochschulabschluss", "University degree", "Вища освіта"),
    },
}

_MESSAGES: dict[str, Text] = {
    "ags": (
        "Bitte 5 oder 8 Ziffern eingeben (z. B. 09162000).",
        "Please enter 5 or 8 digits (e.g. 09162000).",
        "Введіть 5 або 8 цифр (напр. 09162000).",
    ),
    "ags_list": (
        "Bitte Gemeindeschlüssel mit 5 oder 8 Ziffern eingeben, durch Leerzeichen getrennt.",
        "Please enter keys of 5 or 8 digits, separated by spaces.",
        "Введіть ключі з 5 або 8 цифр, розділені пробілами.",
    ),
    "ags_list_max": (
        "Bitte höchstens {n} Gemeindeschlüssel mit 5 oder 8 Ziffern eingeben, durch Leerzeichen getrennt.",
        "Please enter at most {n} keys of 5 or 8 digits, separated by spaces.",
        "Введіть не більше {n} ключів з 5 або 8 цифр, розділених пробілами.",
    ),
    "min": ("Bitte eine Zahl ab {lo} eingeben.", "Please enter a number of at least {lo}.", "Введіть число, не менше ніж {lo}."),
    "range": ("Bitte eine Zahl von {lo} bis {hi} eingeben.", "Please enter a number from {lo} to {hi}.", "Введіть число від {lo} до {hi}."),
    "accessible_units": (
        "Bitte eine Zahl ab 0 eingeben, höchstens so viele wie freie Wohnungen.",
        "Please enter a number of at least 0 and at most the number of available dwellings.",
        "Введіть число від 0, але не більше за кількість вільних помешкань.",
    ),
    "min_persons": (
        "Bitte eine Zahl ab 0 eingeben, höchstens die Aufnahmekapazität.",
        "Please enter a number of at least 0 and at most the capacity.",
        "Введіть число від 0, але не більше за кількість осіб, яких ви можете прийняти.",
    ),
    "state": (
        "Das Bundesland passt nicht zum Gemeindeschlüssel (erste zwei Ziffern).",
        "The state does not match the municipality key (its first two digits).",
        "Федеральна земля не відповідає ключу громади (першим двом цифрам).",
    ),
    "period": (
        "Bitte im Format JJJJ-MM eingeben, z. B. 2025-07.",
        "Please use the format YYYY-MM, e.g. 2025-07.",
        "Використовуйте формат РРРР-ММ, напр. 2025-07.",
    ),
    "email": (
        "Bitte eine gültige E-Mail-Adresse eingeben.",
        "Please enter a valid e-mail address.",
        "Введіть дійсну адресу електронної пошти.",
    ),
    "date_of_birth": (
        "Bitte ein Geburtsdatum zwischen 1900 und heute eingeben.",
        "Please enter a date of birth between 1900 and today.",
        "Введіть дату народження між 1900 роком і сьогоднішнім днем.",
    ),
    "linked_household_refs": (
        "Bitte nicht die eigene Referenznummer eintragen.",
        "Please do not enter your own reference number.",
        "Не вказуйте власний реєстраційний номер.",
    ),
}

_TITLES: dict[str, str] = {
    "municipalities": "Rematch: Kommunen / Municipalities / Громади",
    "households": "Rematch: Haushalte / Households / Домогосподарства",
}
FORM_IDS: dict[str, str] = {"municipalities": "rematch_municipality", "households": "rematch_household"}
# Municipality staff work in German; most households read Ukrainian first.
DEFAULT_LANGUAGE: dict[str, str] = {"municipalities": "de", "households": "uk"}


def _fill(text: Text, **values: object) -> Text:
    return (text[0].format(**values), text[1].format(**values), text[2].format(**values))


def _number(value: float) -> str:
    return f"{value:g}"


def field_label(form: str, name: str) -> Text:
    """Question wording of a canonical field in one questionnaire (``form`` = contract table of the main sheet)."""
    specific = _FORM_LABELS.get(form, {})
    if name in specific:
        return specific[name]
    if name not in _LABELS:
        raise KeyError(f"no label for field {name!r}: add it to forms_builder._LABELS")
    return _LABELS[name]


def field_hint(name: str) -> Text | None:
    """Hint of a canonical field, if any."""
    return _HINTS.get(name)


def list_name(f: Field) -> str:
    """Choice list name of a select field: the contract constant holding its code list, lower-cased.

    Found by identity so that the list name follows the contract (``MEDICAL`` → ``medical``)
    without restating any code list here.
    """
    if f.kind is Kind.BOOL:
        return YES_NO_LIST
    for name, value in vars(contract).items():
        if name.isupper() and value is f.codes:
            return name.lower()
    for name, value in vars(contract).items():  # an equal tuple declared elsewhere
        if name.isupper() and isinstance(value, tuple) and value == f.codes:
            return name.lower()
    return f.name


def choice_label(list_: str, code: str) -> Text:
    """Wording of one choice; every contract code must have one."""
    labels = _CHOICE_LABELS.get(list_, {})
    if code not in labels:
        raise KeyError(f"no label for code {code!r} of list {list_!r}: add it to forms_builder._CHOICE_LABELS")
    return labels[code]


# --------------------------------------------------------------------------------------------
# XLSForm rows
# --------------------------------------------------------------------------------------------


@dataclass
class SurveyRow:
    """One row of the XLSForm ``survey`` sheet."""

    type: str
    name: str = ""
    label: Text | None = None
    hint: Text | None = None
    required: bool = False
    constraint: str = ""
    constraint_message: Text | None = None
    relevant: str = ""
    default: str = ""
    appearance: str = ""
    calculation: str = ""


SURVEY_COLUMNS: tuple[str, ...] = (
    "type",
    "name",
    *(f"label::{lang}" for _, lang in LANGUAGES),
    *(f"hint::{lang}" for _, lang in LANGUAGES),
    "required",
    "constraint",
    *(f"constraint_message::{lang}" for _, lang in LANGUAGES),
    "relevant",
    "default",
    "appearance",
    "calculation",
)
CHOICE_COLUMNS: tuple[str, ...] = ("list_name", "name", *(f"label::{lang}" for _, lang in LANGUAGES))
SETTINGS_COLUMNS: tuple[str, ...] = ("form_title", "form_id", "version", "default_language")


def _and(*conditions: str) -> str:
    parts = [c for c in conditions if c]
    return " and ".join(f"({c})" if " or " in c else c for c in parts)


def _constraint(form: str, f: Field) -> tuple[str, Text | None]:
    """XLSForm constraint and its message for one field (ranges, AGS shapes, cross-field rules)."""
    if f.kind in (Kind.INT, Kind.DECIMAL):
        bounds = []
        if f.minimum is not None:
            bounds.append(f". >= {_number(f.minimum)}")
        if f.maximum is not None:
            bounds.append(f". <= {_number(f.maximum)}")
        # Cross-field rules validation also enforces; caught here while the form is still open.
        if form == "municipalities" and f.name == "accessible_units":
            return _and(*bounds, ". <= ${housing_units}"), _MESSAGES["accessible_units"]
        if form == "municipalities" and f.name == "min_persons":
            return _and(*bounds, ". <= ${capacity_persons}"), _MESSAGES["min_persons"]
        if f.minimum is not None and f.maximum is not None:
            return _and(*bounds), _fill(_MESSAGES["range"], lo=_number(f.minimum), hi=_number(f.maximum))
        if f.minimum is not None:
            return _and(*bounds), _fill(_MESSAGES["min"], lo=_number(f.minimum))
        return "", None
    if f.kind is Kind.AGS:
        return f"regex(., '{AGS_REGEX}')", _MESSAGES["ags"]
    if f.kind is Kind.AGS_LIST:
        if f.max_items is not None:
            regex = f"^{_AGS_ITEM}( {_AGS_ITEM}){{0,{f.max_items - 1}}}$"
            return f"regex(., '{regex}')", _fill(_MESSAGES["ags_list_max"], n=f.max_items)
        return f"regex(., '^{_AGS_ITEM}( {_AGS_ITEM})*$')", _MESSAGES["ags_list"]
    if f.kind is Kind.DATE and f.name == "date_of_birth":
        return ". <= today() and . >= date('1900-01-01')", _MESSAGES["date_of_birth"]
    if f.name == "intake_period":
        return f"regex(., '{PERIOD_REGEX}')", _MESSAGES["period"]
    if f.name == "contact_email":
        return f"regex(., '{EMAIL_REGEX}')", _MESSAGES["email"]
    if f.name == "state" and form == "municipalities":
        # The first two AGS digits name the Land; a mismatch is a typo in one of the two answers.
        pairs = " or ".join(
            f"(substr(${{municipality_id}}, 0, 2) = '{land}' and . = '{state}')" for land, state in STATE_BY_LAND.items()
        )
        return f"${{municipality_id}} = '' or {pairs}", _MESSAGES["state"]
    if f.name == "linked_household_refs":
        return "not(contains(concat(' ', ., ' '), concat(' ', ${household_ref}, ' ')))", _MESSAGES["linked_household_refs"]
    return "", None


def _question(form: str, f: Field, relevant: str = "") -> SurveyRow:
    """The survey row asking one canonical field."""
    if f.kind is Kind.UUID:
        # The form's own instance id, frozen at first save (see module docstring).
        return SurveyRow("calculate", f.name, calculation="once(substr(../meta/instanceID, 5))")
    if f.kind is Kind.TIMESTAMP:
        return SurveyRow("end", f.name)
    xls_type = {
        Kind.TEXT: "text",
        Kind.AGS: "text",
        Kind.AGS_LIST: "text",
        Kind.REF_LIST: "text",
        Kind.INT: "integer",
        Kind.DECIMAL: "decimal",
        Kind.DATE: "date",
        Kind.BOOL: f"select_one {YES_NO_LIST}",
        Kind.CODE: f"select_one {list_name(f)}",
        Kind.CODES: f"select_multiple {list_name(f)}",
    }[f.kind]
    constraint, message = _constraint(form, f)
    appearance = ""
    if f.kind is Kind.AGS:
        appearance = "numbers"  # digit keyboard, value stays text (leading zeros kept)
    elif f.name == "notes":
        appearance = "multiline"
    elif f.kind is Kind.CODE and len(f.codes) > 10:
        appearance = "minimal"  # drop-down for the 16 states / 15 occupations
    return SurveyRow(
        xls_type,
        f.name,
        label=field_label(form, f.name),
        hint=field_hint(f.name),
        required=f.required,
        constraint=constraint,
        constraint_message=message,
        relevant=relevant,
        default=f.default or "",
        appearance=appearance,
    )


def _note(name: str, relevant: str = "") -> SurveyRow:
    return SurveyRow("note", name, label=_NOTES[name], relevant=relevant)


def municipality_rows() -> list[SurveyRow]:
    """Survey rows of the municipality questionnaire, in contract order."""
    rows = [_note("municipality_note")]
    rows += [_question("municipalities", f) for f in MUNICIPALITY_FIELDS]
    return rows


def member_fields() -> tuple[Field, ...]:
    """Member fields asked inside the repeat: all but the join key supplied by the export."""
    return tuple(f for f in MEMBER_FIELDS if f.kind is not Kind.UUID)


def household_rows() -> list[SurveyRow]:
    """Survey rows of the household questionnaire, with the consent gate and the members repeat."""
    rows = [_note("intro_note")]
    gated = False  # everything after consent_processing needs consent
    for f in HOUSEHOLD_FIELDS:
        if f.name == CONSENT_FIELD:
            rows.append(_note("consent_note"))
        if f.name == contract.IMPORTANCE_FIELDS[0]:
            rows.append(_note("importance_note", CONSENTED))
        relevant = CONSENTED if gated else ""
        if f.name == "family_ties_importance":
            relevant = _and(relevant, "${family_ties_municipality_id} != ''")
        rows.append(_question("households", f, relevant))
        if f.name == CONSENT_FIELD:
            rows.append(_note("consent_refused_note", "${consent_processing} = 'no'"))
            gated = True
    rows.append(_note("members_note", CONSENTED))
    rows.append(SurveyRow("begin_repeat", REPEAT_NAME, label=_REPEAT_LABEL, relevant=CONSENTED))
    rows += [_question("households", f) for f in member_fields()]
    rows.append(SurveyRow("end_repeat"))
    return rows


def _choice_lists(fields: Iterable[Field]) -> list[tuple[str, tuple[str, ...]]]:
    """(list name, codes) of every select field, first use first, each list once."""
    seen: dict[str, tuple[str, ...]] = {}
    for f in fields:
        if f.kind is Kind.BOOL:
            seen.setdefault(YES_NO_LIST, YES_NO)
        elif f.kind in (Kind.CODE, Kind.CODES):
            seen.setdefault(list_name(f), f.codes)
    return list(seen.items())


def _text_cells(text: Text | None) -> list[str]:
    return list(text) if text else ["", "", ""]


def survey_table(rows: Sequence[SurveyRow]) -> list[list[str]]:
    """The ``survey`` sheet as rows of cells (header first)."""
    table = [list(SURVEY_COLUMNS)]
    for r in rows:
        table.append(
            [
                r.type,
                r.name,
                *_text_cells(r.label),
                *_text_cells(r.hint),
                "yes" if r.required else "",
                r.constraint,
                *_text_cells(r.constraint_message),
                r.relevant,
                r.default,
                r.appearance,
                r.calculation,
            ]
        )
    return table


def choices_table(lists: Sequence[tuple[str, tuple[str, ...]]]) -> list[list[str]]:
    """The ``choices`` sheet as rows of cells (header first)."""
    table = [list(CHOICE_COLUMNS)]
    for name, codes in lists:
        for code in codes:
            table.append([name, code, *choice_label(name, code)])
    return table


@dataclass(frozen=True)
class XLSForm:
    """One questionnaire's three sheets, as cell text."""

    form: str  # contract table of the main sheet: municipalities or households
    survey: list[list[str]]
    choices: list[list[str]]
    settings: list[list[str]] = field(default_factory=list)


def build_xlsform(form: str) -> XLSForm:
    """The XLSForm of ``municipalities`` or ``households``.

    The version is a digest of the survey and choices, so it changes exactly when the form does
    (ODK Central refuses a new form definition with an old version string).
    """
    if form == "municipalities":
        rows, fields = municipality_rows(), MUNICIPALITY_FIELDS
    elif form == "households":
        rows, fields = household_rows(), HOUSEHOLD_FIELDS + member_fields()
    else:
        raise ValueError(f"unknown questionnaire {form!r}")
    survey = survey_table(rows)
    choices = choices_table(_choice_lists(fields))
    digest = hashlib.sha256(json.dumps([survey, choices], ensure_ascii=False).encode()).hexdigest()[:12]
    language = dict(LANGUAGES)[DEFAULT_LANGUAGE[form]]
    settings = [list(SETTINGS_COLUMNS), [_TITLES[form], FORM_IDS[form], digest, language]]
    return XLSForm(form, survey, choices, settings)


def write_xlsform(xlsform: XLSForm, path: Path) -> None:
    """Write an XLSForm workbook with fixed metadata so that equal content gives equal bytes."""
    # in_memory: xlsxwriter then stamps every zip member 1980-01-01 instead of temp-file times.
    book = xlsxwriter.Workbook(
        str(path),
        {"in_memory": True, "strings_to_numbers": False, "strings_to_formulas": False, "strings_to_urls": False},
    )
    book.set_properties({"title": _TITLES[xlsform.form], "author": "rematch_pipeline", "created": FIXED_TIME})
    bold = book.add_format({"bold": True})
    for sheet_name, table in (("survey", xlsform.survey), ("choices", xlsform.choices), ("settings", xlsform.settings)):
        sheet = book.add_worksheet(sheet_name)
        for r, cells in enumerate(table):
            for c, value in enumerate(cells):
                if value != "":
                    # write_string: constraints like ". >= 0" and codes like "A1" must stay text.
                    sheet.write_string(r, c, value, bold if r == 0 else None)
        sheet.freeze_panes(1, 0)
    book.close()


# --------------------------------------------------------------------------------------------
# LimeSurvey
# --------------------------------------------------------------------------------------------

MAPPING_COLUMNS: tuple[str, ...] = (
    "survey",
    "table",
    "canonical_field",
    "member_slot",
    "limesurvey_question_code",
    "question_type",
    "type_code",
    "answer_codes",
    "export_columns",
)
_LS_TYPE_NAMES: dict[str, str] = {
    "S": "Short free text",
    "T": "Long free text",
    "N": "Numerical input",
    "D": "Date/Time",
    "Y": "Yes/No",
    "L": "List (radio)",
    "!": "List (dropdown)",
    "M": "Multiple choice",
}
# LimeSurvey core question theme of each type (questions.question_theme_name).
_LS_THEMES: dict[str, str] = {
    "S": "shortfreetext",
    "T": "longfreetext",
    "N": "numerical",
    "D": "date",
    "Y": "yesno",
    "L": "listradio",
    "!": "list_dropdown",
    "M": "multiplechoice",
}
LS_YES_NO: dict[str, str] = {"yes": "Y", "no": "N"}


def ls_type(f: Field) -> str:
    """LimeSurvey question type code of a canonical field."""
    if f.kind in (Kind.INT, Kind.DECIMAL):
        return "N"
    if f.kind is Kind.DATE:
        return "D"
    if f.kind is Kind.BOOL:
        return "Y"
    if f.kind is Kind.CODE:
        return "!" if len(f.codes) > 10 else "L"
    if f.kind is Kind.CODES:
        return "M"
    if f.name == "notes":
        return "T"
    return "S"


@dataclass(frozen=True)
class LsQuestion:
    """One LimeSurvey question of a survey, with its canonical field."""

    table: str
    field: Field
    code: str
    slot: int | None = None


def _ls_codes() -> ModuleType:
    """The LimeSurvey code module, imported late: the XLSForms do not depend on it."""
    from rematch_pipeline.schemas import limesurvey_codes

    return limesurvey_codes


def ls_questions(survey: str) -> list[LsQuestion]:
    """Questions of the ``municipalities`` or ``households`` LimeSurvey survey, in order."""
    codes = _ls_codes()
    questions: list[LsQuestion] = []
    main = MUNICIPALITY_FIELDS if survey == "municipalities" else HOUSEHOLD_FIELDS
    for f in main:
        if f.name in codes.LIMESURVEY_SYSTEM_COLUMNS:
            continue
        questions.append(LsQuestion(survey, f, codes.LIMESURVEY_QUESTION_CODES[survey][f.name]))
    if survey == "households":
        for slot in range(1, codes.LIMESURVEY_MEMBER_SLOTS + 1):
            for f in member_fields():
                questions.append(LsQuestion("members", f, codes.member_code(slot, f.name), slot))
    return questions


def _ls_options(f: Field) -> list[tuple[str, str]]:
    """(canonical code, LimeSurvey code) of a field's answers or sub-questions."""
    if f.kind is Kind.BOOL:
        return list(LS_YES_NO.items())
    return [(c, _ls_codes().LIMESURVEY_OPTION_CODES[c]) for c in f.codes]


def mapping_rows() -> list[list[str]]:
    """The LimeSurvey mapping table (header first): system columns, then every question."""
    codes = _ls_codes()
    table = [list(MAPPING_COLUMNS)]
    for survey in ("municipalities", "households"):
        for name, column in codes.LIMESURVEY_SYSTEM_COLUMNS.items():
            table.append([survey, survey, name, "", column, "LimeSurvey response column", "", "", column])
        if survey == "households":
            table.append([survey, "members", "submission_id", "", "id", "the household's response id", "", "", "id"])
        for q in ls_questions(survey):
            t = ls_type(q.field)
            options = _ls_options(q.field) if t in ("Y", "L", "!", "M") else []
            answers = " ".join(f"{canonical}={code}" for canonical, code in options)
            exports = " ".join(f"{q.code}[{code}]" for _, code in options) if t == "M" else q.code
            table.append([survey, q.table, q.field.name, str(q.slot or ""), q.code, _LS_TYPE_NAMES[t], t, answers, exports])
    return table


def write_rows_csv(rows: Sequence[Sequence[str]], path: Path) -> None:
    """Write rows as UTF-8 CSV with LF line ends (stable bytes): the forms' mapping table, a document kept in git,
    so without formats.writers.write_csv's byte order mark and formula neutralising (its cells are our own words)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode("utf-8"))


# LSS: LimeSurvey's survey structure XML (tables as <fields>/<rows>; the 4.x+ layout with *_l10ns).
LSS_DB_VERSION = "450"
LS_SURVEY_IDS: dict[str, int] = {"municipalities": 461001, "households": 461002}
LS_LANGUAGE_CODES: tuple[str, ...] = tuple(code for code, _ in LANGUAGES)

_LS_GROUPS: dict[str, dict[str, Text]] = {
    # first field of a group -> group name; later fields join the last group started
    "municipalities": {
        "municipality_id": ("Kommune", "Municipality", "Громада"),
        "capacity_persons": ("Kapazität und Wohnraum", "Capacity and housing", "Місткість і житло"),
        "kita_places": ("Kita, Schule, Kurse", "Childcare, schools, courses", "Дитсадки, школи, курси"),
        "medical_care": ("Versorgung und Umfeld", "Care and surroundings", "Медицина та середовище"),
        "contact_name": ("Kontakt", "Contact", "Контакт"),
    },
    "households": {
        "household_ref": ("Einwilligung", "Consent", "Згода"),
        "contact_name": ("Kontakt", "Contact", "Контакти"),
        "pets": ("Wünsche und Bindungen", "Wishes and ties", "Побажання та зв’язки"),
    },
}
_LS_MEMBER_GROUP: Text = ("Person {k}", "Person {k}", "Особа {k}")
_LS_MEMBER_NAME_HINT: Text = (
    "Leer lassen, wenn keine weitere Person zum Haushalt gehört.",
    "Leave empty if there is no further person in the household.",
    "Залиште порожнім, якщо в домогосподарстві більше немає осіб.",
)
_LS_WELCOME: dict[str, Text] = {
    "municipalities": _NOTES["municipality_note"],
    "households": (
        _NOTES["intro_note"][0] + "<br /><br />" + _NOTES["consent_note"][0],
        _NOTES["intro_note"][1] + "<br /><br />" + _NOTES["consent_note"][1],
        _NOTES["intro_note"][2] + "<br /><br />" + _NOTES["consent_note"][2],
    ),
}
_LS_END: Text = ("Vielen Dank für Ihre Angaben.", "Thank you for your answers.", "Дякуємо за ваші відповіді.")


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _ls_table(name: str, columns: Sequence[str], rows: Sequence[dict[str, object]]) -> str:
    """One LSS table: <name><fields>…</fields><rows><row>…</row></rows></name>."""
    out = [f" <{name}>", "  <fields>"]
    out += [f"   <fieldname>{escape(c)}</fieldname>" for c in columns]
    out += ["  </fields>", "  <rows>"]
    for row in rows:
        out.append("   <row>")
        for c in columns:
            value = row.get(c)
            if value is None or value == "":
                out.append(f"    <{c}/>")
            else:
                out.append(f"    <{c}>{_cdata(str(value))}</{c}>")
        out.append("   </row>")
    out += ["  </rows>", f" </{name}>"]
    return "\n".join(out)


def _ls_text(text: Text, language: str) -> str:
    return text[LS_LANGUAGE_CODES.index(language)]


def _ls_relevance(q: LsQuestion) -> str:
    """LimeSurvey ExpressionScript relevance of one question (``1`` = always)."""
    codes = _ls_codes()
    consented = f'{codes.LIMESURVEY_QUESTION_CODES["households"][CONSENT_FIELD]}.NAOK == "Y"'
    conditions: list[str] = []
    if q.table == "households":
        order = [f.name for f in HOUSEHOLD_FIELDS]
        if order.index(q.field.name) > order.index(CONSENT_FIELD):
            conditions.append(consented)
        if q.field.name == "family_ties_importance":
            conditions.append(f'!is_empty({codes.LIMESURVEY_QUESTION_CODES["households"]["family_ties_municipality_id"]}.NAOK)')
    elif q.table == "members" and q.field.name != "member_name":
        # A slot's other questions appear once the person's name is entered.
        conditions.append(f"!is_empty({codes.member_code(q.slot or 1, 'member_name')}.NAOK)")
    return " and ".join(conditions) or "1"


def _ls_preg(q: LsQuestion) -> str:
    f = q.field
    if f.kind is Kind.AGS:
        return f"/{AGS_REGEX}/"
    if f.kind is Kind.AGS_LIST:
        repeat = f"{{0,{f.max_items - 1}}}" if f.max_items is not None else "*"
        return f"/^{_AGS_ITEM}( {_AGS_ITEM}){repeat}$/"
    if f.name == "intake_period":
        return f"/{PERIOD_REGEX}/"
    if f.name == "contact_email":
        return f"/{EMAIL_REGEX}/"
    return ""


def _ls_mandatory(q: LsQuestion) -> str:
    if q.table == "members" and q.field.name == "member_name" and (q.slot or 1) > 1:
        return "N"  # further slots are optional: an empty name ends the list of persons
    return "Y" if q.field.required else "N"


def build_lss(survey: str) -> str:
    """LimeSurvey survey structure (.lss XML) of ``municipalities`` or ``households``."""
    codes = _ls_codes()
    sid = LS_SURVEY_IDS[survey]
    base = DEFAULT_LANGUAGE[survey]
    languages = (base, *[c for c in LS_LANGUAGE_CODES if c != base])
    questions = ls_questions(survey)
    cross_checks = _ls_cross_checks(survey)

    groups: list[dict[str, object]] = []
    group_l10ns: list[dict[str, object]] = []
    question_rows: list[dict[str, object]] = []
    sub_rows: list[dict[str, object]] = []
    question_l10ns: list[dict[str, object]] = []
    answers: list[dict[str, object]] = []
    answer_l10ns: list[dict[str, object]] = []
    attributes: list[dict[str, object]] = []
    ids = {"gid": 0, "qid": 0, "aid": 0, "l10n": 0, "gl10n": 0, "al10n": 0}

    def next_id(kind: str) -> int:
        ids[kind] += 1
        return ids[kind]

    def add_group(name: Text, relevance: str) -> int:
        gid = next_id("gid")
        groups.append({"gid": gid, "sid": sid, "group_order": gid, "randomization_group": "", "grelevance": relevance})
        for lang in languages:
            group_l10ns.append({"id": next_id("gl10n"), "gid": gid, "group_name": _ls_text(name, lang), "description": "", "language": lang})
        return gid

    consented = f'{codes.LIMESURVEY_QUESTION_CODES["households"][CONSENT_FIELD]}.NAOK == "Y"'
    gid = 0
    order = 0
    current_slot: int | None = None
    for q in questions:
        if q.table == "members":
            if q.slot != current_slot:
                current_slot = q.slot
                relevance = consented
                if (q.slot or 1) > 1:
                    relevance += f" and !is_empty({codes.member_code((q.slot or 1) - 1, 'member_name')}.NAOK)"
                gid = add_group(_fill(_LS_MEMBER_GROUP, k=q.slot), relevance)
                order = 0
        elif q.field.name in _LS_GROUPS[survey]:
            starts_after_consent = survey == "households" and q.field.name != "household_ref"
            gid = add_group(_LS_GROUPS[survey][q.field.name], consented if starts_after_consent else "1")
            order = 0
        if gid == 0:
            raise ValueError(f"{survey}: field {q.field.name} comes before the first LimeSurvey group")
        order += 1
        qid = next_id("qid")
        t = ls_type(q.field)
        question_rows.append(
            {
                "qid": qid,
                "parent_qid": 0,
                "sid": sid,
                "gid": gid,
                "type": t,
                "title": q.code,
                "preg": _ls_preg(q),
                "other": "N",
                "mandatory": _ls_mandatory(q),
                # LimeSurvey's field encryption for identifying free text (names, contacts, references).
                "encrypted": "Y" if q.field.pii and t in ("S", "T") else "N",
                "question_order": order,
                "scale_id": 0,
                "same_default": 0,
                "relevance": _ls_relevance(q),
                "question_theme_name": _LS_THEMES[t],
                "modulename": "",
            }
        )
        form = "households" if q.table == "members" else survey
        hint = field_hint(q.field.name)
        if q.table == "members" and q.field.name == "member_name" and (q.slot or 1) > 1:
            hint = _LS_MEMBER_NAME_HINT
        for lang in languages:
            question_l10ns.append(
                {
                    "id": next_id("l10n"),
                    "qid": qid,
                    "question": _ls_text(field_label(form, q.field.name), lang),
                    "help": _ls_text(hint, lang) if hint else "",
                    "script": "",
                    "language": lang,
                }
            )
        if t in ("L", "!"):
            list_ = list_name(q.field)
            for sort, (canonical, code) in enumerate(_ls_options(q.field), start=1):
                aid = next_id("aid")
                answers.append({"aid": aid, "qid": qid, "code": code, "sortorder": sort, "assessment_value": 0, "scale_id": 0})
                for lang in languages:
                    answer_l10ns.append(
                        {"id": next_id("al10n"), "aid": aid, "answer": _ls_text(choice_label(list_, canonical), lang), "language": lang}
                    )
        if t == "M":
            list_ = list_name(q.field)
            for sort, (canonical, code) in enumerate(_ls_options(q.field), start=1):
                sub = next_id("qid")
                sub_rows.append(
                    {
                        "qid": sub,
                        "parent_qid": qid,
                        "sid": sid,
                        "gid": gid,
                        "type": "T",
                        "title": code,
                        "preg": "",
                        "other": "N",
                        "mandatory": "",
                        "encrypted": "N",
                        "question_order": sort,
                        "scale_id": 0,
                        "same_default": 0,
                        "relevance": "1",
                        "question_theme_name": "",
                        "modulename": "",
                    }
                )
                for lang in languages:
                    question_l10ns.append(
                        {
                            "id": next_id("l10n"),
                            "qid": sub,
                            "question": _ls_text(choice_label(list_, canonical), lang),
                            "help": "",
                            "script": "",
                            "language": lang,
                        }
                    )
        if t == "N":
            if q.field.kind is Kind.INT:
                attributes.append({"qid": qid, "attribute": "num_value_int_only", "value": "1", "language": ""})
            if q.field.minimum is not None:
                attributes.append({"qid": qid, "attribute": "min_num_value_n", "value": _number(q.field.minimum), "language": ""})
            if q.field.maximum is not None:
                attributes.append({"qid": qid, "attribute": "max_num_value_n", "value": _number(q.field.maximum), "language": ""})
        if t == "D":
            attributes.append({"qid": qid, "attribute": "date_format", "value": "dd.mm.yyyy", "language": ""})
            attributes.append({"qid": qid, "attribute": "date_min", "value": "1900-01-01", "language": ""})
        cross = cross_checks.get(q.field.name)
        if cross is not None:
            equation, tip = cross
            attributes.append({"qid": qid, "attribute": "em_validation_q", "value": equation, "language": ""})
            for lang in languages:
                attributes.append({"qid": qid, "attribute": "em_validation_q_tip", "value": _ls_text(tip, lang), "language": lang})

    question_columns = (
        "qid",
        "parent_qid",
        "sid",
        "gid",
        "type",
        "title",
        "preg",
        "other",
        "mandatory",
        "encrypted",
        "question_order",
        "scale_id",
        "same_default",
        "relevance",
        "question_theme_name",
        "modulename",
    )
    survey_row = {
        "sid": sid,
        "gsid": 1,
        "admin": "inherit",
        "adminemail": "inherit",
        "anonymized": "N",
        "format": "G",
        "savetimings": "N",
        "template": "inherit",
        "language": base,
        "additional_languages": " ".join(languages[1:]),
        # Date stamps give submitdate, which the reader needs as submitted_at.
        "datestamp": "Y",
        "usecookie": "N",
        "allowregister": "N",
        "allowsave": "Y",
        "autoredirect": "N",
        "allowprev": "Y",
        "printanswers": "N",
        # Privacy: no IP address or referrer URL is stored with a response.
        "ipaddr": "N",
        "ipanonymize": "Y",
        "refurl": "N",
        "showsurveypolicynotice": "0",
        "publicstatistics": "N",
        "publicgraphs": "N",
        "listpublic": "N",
        "htmlemail": "Y",
        "sendconfirmation": "N",
        "tokenanswerspersistence": "N",
        "assessments": "N",
        "usecaptcha": "N",
        "usetokens": "N",
        "showxquestions": "N",
        "showgroupinfo": "N",
        "shownoanswer": "N",
        "showqnumcode": "X",
        "bounceprocessing": "N",
        "showwelcome": "Y",
        "showprogress": "Y",
        "questionindex": "0",
        "navigationdelay": "0",
        "nokeyboard": "N",
        "alloweditaftercompletion": "N",
    }
    language_rows = [
        {
            "surveyls_survey_id": sid,
            "surveyls_language": lang,
            "surveyls_title": _TITLES[survey],
            "surveyls_description": "",
            "surveyls_welcometext": _ls_text(_LS_WELCOME[survey], lang),
            "surveyls_endtext": _ls_text(_LS_END, lang),
            "surveyls_url": "",
            "surveyls_urldescription": "",
            "surveyls_dateformat": 1,  # dd.mm.yyyy on screen; exports are ISO regardless
            "surveyls_numberformat": 0,  # decimal point, as the contract expects
        }
        for lang in languages
    ]
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<document>",
        " <LimeSurveyDocType>Survey</LimeSurveyDocType>",
        f" <DBVersion>{LSS_DB_VERSION}</DBVersion>",
        " <languages>",
        *[f"  <language>{lang}</language>" for lang in languages],
        " </languages>",
        _ls_table("answers", ("aid", "qid", "code", "sortorder", "assessment_value", "scale_id"), answers),
        _ls_table("answer_l10ns", ("id", "aid", "answer", "language"), answer_l10ns),
        _ls_table("groups", ("gid", "sid", "group_order", "randomization_group", "grelevance"), groups),
        _ls_table("group_l10ns", ("id", "gid", "group_name", "description", "language"), group_l10ns),
        _ls_table("questions", question_columns, question_rows),
        _ls_table("subquestions", question_columns, sub_rows),
        _ls_table("question_l10ns", ("id", "qid", "question", "help", "script", "language"), question_l10ns),
        _ls_table("question_attributes", ("qid", "attribute", "value", "language"), attributes),
        _ls_table("surveys", tuple(survey_row), [survey_row]),
        _ls_table("surveys_languagesettings", tuple(language_rows[0]), language_rows),
        "</document>",
        "",
    ]
    return "\n".join(parts)


def _ls_cross_checks(survey: str) -> dict[str, tuple[str, Text]]:
    """Cross-field validation equations and tips of a LimeSurvey survey (same rules as the XLSForm)."""
    if survey != "municipalities":
        return {}
    q = _ls_codes().LIMESURVEY_QUESTION_CODES["municipalities"]
    return {
        "accessible_units": (
            f"is_empty({q['accessible_units']}.NAOK) or {q['accessible_units']}.NAOK <= {q['housing_units']}.NAOK",
            _MESSAGES["accessible_units"],
        ),
        "min_persons": (
            f"is_empty({q['min_persons']}.NAOK) or {q['min_persons']}.NAOK <= {q['capacity_persons']}.NAOK",
            _MESSAGES["min_persons"],
        ),
    }


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def build_all(out_dir: Path) -> list[Path]:
    """Write every generated questionnaire file into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for form, file_name in (("municipalities", MUNICIPALITY_XLSX), ("households", HOUSEHOLD_XLSX)):
        path = out_dir / file_name
        write_xlsform(build_xlsform(form), path)
        written.append(path)
    write_rows_csv(mapping_rows(), out_dir / MAPPING_CSV)
    written.append(out_dir / MAPPING_CSV)
    for survey, file_name in (("municipalities", MUNICIPALITY_LSS), ("households", HOUSEHOLD_LSS)):
        path = out_dir / file_name
        path.write_bytes(build_lss(survey).encode("utf-8"))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rematch_pipeline.forms_builder OUT_DIR`` (default ``forms``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 or (args and args[0] in ("-h", "--help")):
        print("usage: python -m rematch_pipeline.forms_builder [OUT_DIR]", file=sys.stderr)
        return 2
    for path in build_all(Path(args[0] if args else "forms")):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
