"""The written script of a Chinese transcript: Simplified, Traditional (Taiwan or Hong Kong), or
as the model wrote it, with OpenCC and its phrase tables.

Whisper picks Simplified or Traditional on its own (often Traditional for mainland Mandarin, and
it may switch within a recording); SenseVoice and Paraformer write Simplified. The transcript
gets the one script its user chose, whatever the model: `to_script` converts every piece once,
at assemble time (like ITN, so a checkpoint does not depend on it), and never fails a run.

Targets and OpenCC configs. A piece the model wrote in Simplified goes straight to the target
(`hk2s`, `s2tw`, `s2hk`). A piece it wrote in Traditional first has the other region's variant
forms undone (`tw2s`, `hk2t`, `tw2t`), which is only safe on Traditional input: `tw2s` turns
Simplified 显著 into 显着, `hk2t` Simplified 吃 into 喫. Taiwan and Hong Kong are `s2tw` and
`s2hk`, not `s2twp` / `s2hkp`: those also swap vocabulary (软件→軟體, 信息→資訊, 视频→影片,
出租车→計程車, 鼠标→滑鼠), which rewrites what the speaker said instead of how it is written.
`s2tw` / `s2hk` still use the phrase tables to choose among one-to-many characters (头发→頭髮,
干净→乾淨, 台风→颱風).
"""

from __future__ import annotations

import logging
import re
import threading
from functools import lru_cache
from typing import Iterable, Sequence

log = logging.getLogger(__name__)

SIMPLIFIED, TAIWAN, HONG_KONG, KEEP = "zh", "zh-TW", "zh-HK", "keep"
SCRIPTS = (SIMPLIFIED, TAIWAN, HONG_KONG, KEEP)
DEFAULT = SIMPLIFIED
LABELS = {
    SIMPLIFIED: "简体 Simplified",
    TAIWAN: "繁體 Traditional (Taiwan)",
    HONG_KONG: "繁體 Traditional (Hong Kong)",
    KEEP: "As the model wrote it",
}
_ALIASES = {"zh-cn": SIMPLIFIED, "zh-hans": SIMPLIFIED, "zh-sg": SIMPLIFIED, "simplified": SIMPLIFIED,
            "zh-tw": TAIWAN, "zh-hk": HONG_KONG, "zh-mo": HONG_KONG, "": DEFAULT}

# OpenCC configs, applied in order: for a piece the model wrote in Simplified, in Traditional.
_FROM_SIMPLIFIED = {SIMPLIFIED: ("hk2s",), TAIWAN: ("s2tw",), HONG_KONG: ("s2hk",)}
_FROM_TRADITIONAL = {SIMPLIFIED: ("tw2s", "hk2s"), TAIWAN: ("hk2t", "s2tw"), HONG_KONG: ("tw2t", "s2hk")}
# What each target's text must equal once converted again (tests and checks): nothing left to change.
CHECK_CONFIG = {SIMPLIFIED: "t2s", TAIWAN: "s2tw", HONG_KONG: "s2hk"}

_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_KANA_HANGUL = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_UNSAFE = re.compile("([\x00\ud800-\udfff]+)")  # OpenCC stops at NUL; surrogates cannot be encoded
_CHINESE_CODES = ("zh", "yue", "cmn", "wuu", "nan", "hak", "gan", "hsn", "chinese", "mandarin", "cantonese")
_lock = threading.Lock()  # the converters are not documented as thread-safe
_warned: set[str] = set()


def canonical(value: object) -> str:
    """The setting's spelling of a script name (case-insensitive, a few aliases), or the value
    itself when it is none of them (so a `choices` check can name it)."""
    text = str(value if value is not None else "").strip()
    lowered = text.lower().replace("_", "-")
    for name in SCRIPTS:
        if lowered == name.lower():
            return name
    return _ALIASES.get(lowered, text)


def parse(value: object) -> str:
    """A valid script setting; ValueError with the allowed values otherwise."""
    name = canonical(value)
    if name not in SCRIPTS:
        raise ValueError(f"script must be one of {', '.join(SCRIPTS)}, not {value!r}")
    return name


def is_known(language: str | None) -> bool:
    """Whether a language is named; '' and 'auto' (and None) mean: detect it."""
    return language not in (None, "", "auto")


def base_language(language: str) -> str:
    """The language without its region or script: "zh-TW", "zh_CN", " ZH " -> "zh"."""
    return (language or "").strip().lower().replace("_", "-").split("-")[0]


def chinese_in_other(language: str, text: str) -> bool:
    """Chinese text decoded as another known language, one whose writing has no Han characters of
    its own (not Japanese or Korean): an input that holds the end of a Mandarin stretch and the
    start of a French one is decoded in one of them, and Whisper writes each as heard."""
    return is_known(language) and not is_chinese(language) and base_language(language) not in ("ja", "ko") \
        and is_chinese("", [text])


HAN_KANA_HANGUL = ("zh", "yue", "ja", "ko")  # languages written with Han characters, kana or hangul


def letters_in_cjk(language: str, recording: str, text: str) -> bool:
    """Text in letters only, decoded as Chinese, Japanese or Korean in a recording whose language
    is written in letters: an input that holds the end of an English stretch and the start of a
    Mandarin one is decoded as Mandarin, and Whisper writes the English as heard. That text is
    the recording's language, not the input's."""
    return base_language(language) in HAN_KANA_HANGUL and is_known(recording) \
        and base_language(recording) not in HAN_KANA_HANGUL and any(ch.isalpha() for ch in text) \
        and not _HAN.search(text) and not _KANA_HANGUL.search(text)


def by_language(languages: Sequence[str]) -> list[tuple[str, list[int]]]:
    """Positions by language (a recording may change language: engines/language_id.py), each
    language once, in the order it first comes."""
    groups: dict[str, list[int]] = {}
    for k, language in enumerate(languages):
        groups.setdefault(language, []).append(k)
    return list(groups.items())


def is_chinese(language: str, texts: Iterable[str] = ()) -> bool:
    """Whether a transcript in `language` is Chinese: zh, zh-*, yue, cmn, ...; when the language is
    unknown ('' or 'auto', e.g. Paraformer), mostly Han characters with (almost) no kana or hangul:
    Japanese and Korean are never converted (nor, in any transcript, a piece with kana)."""
    lang = base_language(language)
    if is_known(lang):
        return lang in _CHINESE_CODES
    han = other = 0
    for text in texts:
        han += len(_HAN.findall(text))
        other += len(_KANA_HANGUL.findall(text))
    return han > 0 and other * 20 <= han


def to_script(texts: Sequence[str], language: str, script: str) -> list[str]:
    """The texts in `script` when the transcript is Chinese, else unchanged; never raises."""
    texts = list(texts)
    if canonical(script) == KEEP or not is_chinese(language, texts):
        return texts
    return convert(texts, script)


def convert(texts: Sequence[str], script: str) -> list[str]:
    """Every text in `script`, one output per input; never raises. A piece without Han
    characters, or with kana (Japanese quoted in a Chinese recording), is left as it is, and so
    is a piece OpenCC fails on (logged)."""
    target = canonical(script)
    out = list(texts)
    if target not in _FROM_SIMPLIFIED or not any(_HAN.search(t) for t in out):
        if target not in SCRIPTS:
            _warn_once(f"unknown script {script!r}: the text is left as the model wrote it")
        return out
    try:
        detect = _converter("t2s")
        chains = {False: [_converter(c) for c in _FROM_SIMPLIFIED[target]],
                  True: [_converter(c) for c in _FROM_TRADITIONAL[target]]}
    except Exception as exc:  # not installed, or its data unreadable: the run goes on unconverted
        _warn_once(f"OpenCC unavailable, Chinese text left as the model wrote it: {type(exc).__name__}: {exc}")
        return out
    failed = 0
    with _lock:
        for i, text in enumerate(out):
            if not _HAN.search(text) or _KANA_HANGUL.search(text):
                continue
            try:
                traditional = _apply(detect, text) != text
                converted = text
                for converter in chains[traditional]:
                    converted = _apply(converter, converted)
            except Exception as exc:
                failed += 1
                if failed == 1:
                    log.warning("script conversion kept the text of %r as it was: %s: %s",
                                text[:80], type(exc).__name__, exc)
                continue
            out[i] = converted
    if failed > 1:
        log.warning("script conversion kept %d pieces as the model wrote them", failed)
    return out


def written_in(text: str, script: str) -> bool:
    """Whether the text is already all in `script`: converting it again changes nothing
    (Simplified: `t2s` finds no Traditional character; Taiwan `s2tw`, Hong Kong `s2hk` no
    Simplified character nor other-region variant form)."""
    config = CHECK_CONFIG.get(canonical(script))
    if config is None:
        return True
    with _lock:
        return _apply(_converter(config), text) == text


@lru_cache(maxsize=None)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def _apply(converter, text: str) -> str:
    parts = _UNSAFE.split(text)  # odd indices: runs OpenCC must not see, kept as they are
    out = []
    for k, part in enumerate(parts):
        if k % 2 or not part:
            out.append(part)
            continue
        converted = converter.convert(part)
        if not isinstance(converted, str) or (part.strip() and not converted.strip()):
            raise ValueError("OpenCC returned no text")
        out.append(converted)
    return "".join(out)


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


__all__ = ["SCRIPTS", "DEFAULT", "LABELS", "SIMPLIFIED", "TAIWAN", "HONG_KONG", "KEEP", "canonical", "parse",
           "is_chinese", "to_script", "convert", "written_in"]
