"""English ITN around wetext, whose grammar writes every ordinal word as a figure and every unit
as its symbol: words that a reader expects to stay words are masked before the call
(``english_keep``) and wetext's output is tidied after it (``tidy_english``):

* a single-word ordinal (first … twentieth, thirtieth … ninetieth, hundredth, thousandth …)
  stays a word in running text: "the first three letters", "now first in line", "first of all",
  "in the second quarter", "a third of the budget", "I second that". It becomes a figure only in
  a date (a month right before: "June first", "June the first"; "of <month>" right after: "the
  first of July") or as the last word of a compound number ("twenty first" → 21st, "one hundred
  and first" → 101st). "may" and "march" in lower case are months only after a date word ("on
  may third") or when written "May"/"March".
* "second" is a unit, not an ordinal, after a figure ("1 second") or "a/an" + number ("a twenty
  second pause" → "a 20 second pause"); masked, it stays "second".
* measures keep the unit as it was said, only the number becomes figures: "thirty seconds" →
  "30 seconds", "ten meters" → "10 meters", "sixty miles per hour" → "60 miles per hour" (not
  "30 s", "10 m", "60 mph": wetext's symbols read badly in a transcript, some are wrong ("5 gb",
  '1 "' for an inch)); "one" before a singular unit stays a word ("wait one second", "one hour").
* a number whose first word is capitalised ("Twenty five dollars…" at the start of a sentence)
  is left as said: wetext reads only lower case and would write "Twenty $5".
* times: "at ten thirty" → "at 10:30" (wetext: "1030"), no leading zero ("3:30 p.m.", not
  "03:30 p.m."), "2 p.m." for "two pm", "3 o'clock" for "three o'clock"; "fifty fifty" stays
  words (wetext: "5050"), so does a number wetext read only half of ("a hundred and forty",
  wetext: "a hundred and 40").
* amounts of five figures and more are grouped ("$250,000", wetext: "$250000"); seven digits
  said one by one are a phone number ("555-1212"; wetext does ten itself: "555-123-4567").
* no space is added before punctuation that had none before it in the raw text ("$25," not
  wetext's "$25 ,"), nor before a per cent sign ("25%", not "25 %").
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_ORDINALS = _words(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth "
    "thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth "
    "thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth hundredth thousandth "
    "millionth billionth")
_HOURS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
          "twelve")
_DIGIT_WORDS = _words("zero oh one two three four five six seven eight nine")
_TENS = _words("twenty thirty forty fifty sixty seventy eighty ninety")
_SCALES = _words("hundred thousand million billion")
_CARDINALS = _words("zero oh thirteen fourteen fifteen sixteen seventeen eighteen nineteen") | set(
    _HOURS) | _TENS | _SCALES
_NUMBER_WORDS = _CARDINALS | _ORDINALS
_MONTHS = _words("january february march april may june july august september october november "
                 "december")
_AMBIGUOUS_MONTHS = _words("may march")  # "you may first…", "march on"
_DATE_LEAD = _words("on by until till til since from before after of through this next last every "
                    "early late mid in")  # not "to": "we need to march first"
_TIME_LEAD = _words("at by until till til from to before after around about since")
# Units that wetext writes as symbols after a number; "per" joins them ("miles per hour" → mph).
_SINGULAR_UNITS = _words(
    "second minute hour millisecond microsecond nanosecond meter metre kilometer kilometre "
    "centimeter centimetre millimeter millimetre micrometer mile foot inch yard gram kilogram "
    "milligram ton tonne byte kilobyte megabyte gigabyte terabyte petabyte bit kilobit megabit "
    "gigabit hertz kilohertz megahertz gigahertz volt kilovolt watt kilowatt megawatt ampere amp "
    "hectare acre liter litre milliliter millilitre ounce pound calorie kilocalorie joule newton "
    "pascal kelvin celsius fahrenheit degree knot")
_UNITS = _SINGULAR_UNITS | _words(
    "seconds minutes hours milliseconds microseconds nanoseconds meters metres kilometers "
    "kilometres centimeters centimetres millimeters millimetres micrometers miles feet inches "
    "yards grams kilograms milligrams tons tonnes bytes kilobytes megabytes gigabytes terabytes "
    "petabytes bits kilobits megabits gigabits volts kilovolts watts kilowatts megawatts amperes "
    "amps hectares acres liters litres milliliters millilitres ounces pounds calories "
    "kilocalories joules newtons pascals kelvins degrees knots per")
_WORD = re.compile(r"[A-Za-z]+(?:['\u2019-][A-Za-z]+)*")
_PUNCT = ".,;:!?\u2026"
_AM_PM = ("a.m.", "p.m.")


def _is_capitalised(word: str) -> bool:
    return word[0].isupper() and (len(word) == 1 or word[1:].islower())


def _after_figure(text: str, start: int) -> bool:
    """A figure, then spaces, right before `start` ("1 second")."""
    j = start - 1
    while j >= 0 and text[j].isspace():
        j -= 1
    return 0 <= j < start - 1 and text[j].isdigit()


def english_keep(text: str) -> tuple[tuple[int, int], ...]:
    """Spans of `text` that wetext must not read as numbers (see the module's docstring)."""
    found = list(_WORD.finditer(text))
    words = [m.group() for m in found]
    low = [w.lower() for w in words]
    # adjacent[i]: word i-1 stands right before word i, with only spaces between them
    adjacent = [i > 0 and text[found[i - 1].end():found[i].start()].isspace() for i in range(len(found))]
    after_figure = [_after_figure(text, m.start()) for m in found]

    def prev(i: int, k: int = 1) -> str:
        while k:
            if i <= 0 or not adjacent[i]:
                return ""
            i, k = i - 1, k - 1
        return low[i]

    def nxt(i: int, k: int = 1) -> str:
        j = i + k
        return low[j] if j < len(low) and all(adjacent[i + 1:j + 1]) else ""

    def month(i: int) -> bool:
        if i < 0 or low[i] not in _MONTHS:
            return False
        return low[i] not in _AMBIGUOUS_MONTHS or words[i][0].isupper() or prev(i) in _DATE_LEAD

    def number_start(i: int) -> int:  # first word of the number that word i ends
        while adjacent[i] and (low[i - 1] in _CARDINALS or low[i - 1] == "and" and i > 1
                               and low[i - 2] in _SCALES):
            i -= 1
        return i

    spans: list[tuple[int, int]] = []
    i = 0
    while i < len(found):
        w, lw = words[i], low[i]
        if lw in _NUMBER_WORDS and lw != "oh" and len(w) > 1 and _is_capitalised(w) \
                and nxt(i) in _NUMBER_WORDS and not _is_capitalised(words[i + 1]):
            j = i + 1  # "Twenty five dollars" opening a sentence: wetext would write "Twenty $5"
            while nxt(j) in _NUMBER_WORDS or nxt(j) == "and" and low[j] in _SCALES and nxt(j, 2) in _NUMBER_WORDS:
                j += 1
            spans.append((found[i].start(), found[j].end()))
            i = j + 1
            continue
        keep = False
        if lw in _ORDINALS:
            p = prev(i)
            compound = p in _TENS or (p in _SCALES and prev(i, 2) in _CARDINALS) or (
                p == "and" and prev(i, 2) in _SCALES and prev(i, 3) in _CARDINALS)
            date = month(i - 1) if adjacent[i] else False
            date = date or (p == "the" and adjacent[i - 1] and month(i - 2))
            date = date or (nxt(i) == "of" and nxt(i, 2) in _MONTHS and month(i + 2))
            if compound and lw == "second":
                s = number_start(i - 1)
                compound = not (adjacent[s] and low[s - 1] in ("a", "an"))  # "a twenty second pause"
            keep = after_figure[i] or not (compound or date)
        elif lw == "one" and nxt(i) in _SINGULAR_UNITS and prev(i) not in _TENS | _SCALES | {"and"}:
            keep = True  # "one hour", "wait one second": not "1 h"
        if keep:
            spans.append((found[i].start(), found[i].end()))
        i += 1
    return tuple(spans)


def _has_digit(token: str) -> bool:
    return any(ch.isdigit() for ch in token)


def _bare(token: str) -> str:
    return token.strip(_PUNCT + "()[]'\u2019").lower()


def _fix_span(raw: list[str], out: list[str], before: list[str]) -> list[str]:
    """One stretch that wetext changed: `raw` words (after the words `before`) became `out` tokens."""
    bare = [_bare(t) for t in raw]
    lead = [_bare(t) for t in before[-2:]]
    raw_before = lead[-1] if lead else ""
    out = list(out)
    if len(raw) == 2 and bare[0] == bare[1] in _TENS and len(out) == 1:
        return list(raw)  # "fifty fifty", not "5050"
    if (raw_before in _SCALES or lead[-2:] and lead[-1] == "and" and lead[0] in _SCALES) and \
            bare[0] in _CARDINALS and out and _has_digit(out[0]):
        return list(raw)  # "a hundred and forty": wetext left "a hundred and" and wrote "40"
    # Measures: the unit as it was said ("30 seconds", not "30 s").
    tail = 0
    while tail < len(raw) and bare[len(raw) - 1 - tail] in _UNITS:
        tail += 1
    if tail and bare[len(raw) - tail] != "per":
        last = max((k for k, t in enumerate(out) if _has_digit(t)), default=-1)
        rest = out[last + 1:]
        if rest and not any(_has_digit(t) for t in rest) and [_bare(t) for t in rest if _bare(t)] != bare[-tail:]:
            out = out[:last + 1] + raw[-tail:]
    # No space before punctuation that had none in the raw text ("$25," not "$25 ,"), nor
    # before a per cent sign ("25%").
    glued: list[str] = []
    for t in out:
        if glued and t and t not in raw and (all(ch in _PUNCT for ch in t) or (
                t[0] == "%" and all(ch in _PUNCT for ch in t[1:]) and _has_digit(glued[-1]))):
            if t == "." and glued[-1].endswith("."):
                continue  # "p m." → "p.m.", not "p.m.."
            glued[-1] += t
        else:
            glued.append(t)
    out = glued
    # Amounts of 10,000 and more in groups of three; seven digits read one by one as a phone
    # number (wetext writes ten that way itself: 555-123-4567).
    for k, t in enumerate(out):
        m = re.fullmatch(r"([$\u20ac\u00a3]?)(\d+)(.*)", t)
        if not m or t in raw:
            continue
        if 5 <= len(m[2]) <= 15 and any(b in _SCALES for b in bare) and not m[3][:1].isdigit():
            out[k] = f"{m[1]}{int(m[2]):,}{m[3]}"
        elif len(m[2]) == 7 and not m[1] and len(bare) == 7 and all(b in _DIGIT_WORDS for b in bare):
            out[k] = f"{m[2][:3]}-{m[2][3:]}{m[3]}"
    # Times.
    for k, t in enumerate(out):
        m = re.fullmatch(r"(\d{1,2})(\d\d)([" + re.escape(_PUNCT) + r"]*)", t)
        if (m and k == 0 and raw_before in _TIME_LEAD and len(raw) >= 2 and bare[0] in _HOURS
                and all(b in _CARDINALS for b in bare) and 1 <= int(m[1]) <= 12 and int(m[2]) < 60):
            out[k] = t = f"{int(m[1])}:{m[2]}{m[3]}"  # "at ten thirty": 10:30, not 1030
        m = re.fullmatch(r"0?(\d{1,2}):(\d\d)(.*)", t)
        if m and t not in raw:
            hour, minutes, end = str(int(m[1])), m[2], m[3]
            if minutes == "00" and not end and k + 1 < len(out) and out[k + 1].lower().startswith(_AM_PM):
                out[k] = hour  # "two pm": 2 p.m.
            elif minutes == "00" and bare and bare[-1] in ("o'clock", "o\u2019clock"):
                out[k:k + 1] = [hour, raw[-1]]  # "three o'clock": 3 o'clock
                break
            else:
                out[k] = f"{hour}:{minutes}{end}"
    return out


def tidy_english(raw: str, normalised: str) -> str:
    """wetext's output with `_fix_span` applied where it differs from the raw text."""
    a = raw.split()
    found = list(re.finditer(r"\S+", normalised))
    b = [m.group() for m in found]
    pieces, pos = [], 0
    for tag, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal" or j1 == j2 or i1 == i2:
            continue
        fixed = _fix_span(a[i1:i2], b[j1:j2], a[max(0, i1 - 2):i1])
        if fixed != b[j1:j2]:
            pieces.append(normalised[pos:found[j1].start()] + " ".join(fixed))
            pos = found[j2 - 1].end()
    return "".join(pieces) + normalised[pos:]
