"""Which language each input is decoded in, when the user left the language to detection.

The recording's language is what its first input sounds like (Whisper's language ID, as
faster-whisper and openai-whisper detect it), and every later input is decoded in it unless it
plainly sounds like another. Whisper writes in the language it is told, and told English it
translates: a meeting of 3 minutes each in English, Mandarin, French and Russian came back all in
English (Whisper base, `vs_faster_whisper.py --only switch`). So each input's language ID is read
too (a decoder step on the encoder output the decode uses), and an input switches when another
language holds SWITCH_TO or more and the recording's SWITCH_FROM or less.

Why not each input's own best guess: on short or code-switched inputs it is unsure. Whisper
base's language ID on the 349 inputs of 13 one-language recordings (the bench's): the true
language held 0.80 or more on every input of 20 s or more, and the best guess was another on
three, all short (the second pass's reruns) or code-switched:
- a 5.6-s Spanish prompt: el 0.18, ar 0.17, es 0.16 (kept: no language is sure);
- 4.1 s of Mandarin with an English phrase: en 0.51, zh 0.42 (kept Mandarin, which writes the
  English phrase in English; decoded as English, the Mandarin would be translated);
- 2.3 s that is the English phrase alone: en 0.81, zh 0.12. It switches, and is written; kept as
  Mandarin, Whisper had written nothing for it.
An input holding the end of one language and the start of the next (speech is packed into inputs
whatever its language) is decoded in the one its language ID favours; at SWITCH_FROM 0.05 one
that was 0.94 Mandarin and 0.06 English stayed English and came back translated.
"""

from __future__ import annotations

from typing import Mapping, Sequence

SWITCH_TO = 0.5     # another language's share of the language ID, at least
SWITCH_FROM = 0.2   # the recording's language's share, at most


def spoken(probabilities: Sequence[Mapping[str, float]], recording: str = "") -> list[str]:
    """Each input's language from its language ID (`probabilities`: language code -> probability,
    one mapping per input). `recording`: the recording's language once known; unknown (''), it
    is the first input's most likely language."""
    if not probabilities:
        return []
    recording = recording or max(probabilities[0], key=probabilities[0].get)
    out = []
    for heard in probabilities:
        best = max(heard, key=heard.get)
        switch = best != recording and heard[best] >= SWITCH_TO and heard.get(recording, 0.0) <= SWITCH_FROM
        out.append(best if switch else recording)
    return out


KEPT = 5  # languages of an input's language ID kept with its output: at most four can hold more
          # than SWITCH_FROM, so `spoken` decides the same from these as from all of them


def likeliest(heard: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """The KEPT likeliest languages of a language ID, likeliest first."""
    return tuple(sorted(heard.items(), key=lambda item: -item[1])[:KEPT])


def same_under(decided: Sequence[tuple[str, Sequence[tuple[str, float]]]], recording: str) -> bool:
    """Whether inputs decoded in these languages (each with its language ID, `likeliest`) would be
    decoded in the same ones had `recording` been known as the recording's language: a window
    run before it was known then stands as it is."""
    return bool(decided) and all(heard and spoken([dict(heard)], recording) == [language] for language, heard in decided)
