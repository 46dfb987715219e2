"""The response formats: json, text, srt, vtt and verbose_json."""

from __future__ import annotations

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from ..modules.transcript import TimedText, Transcript, is_cjk, render

LANGUAGE_NAMES = {"en": "english", "zh": "chinese", "yue": "cantonese", "ja": "japanese", "ko": "korean",
                  "de": "german", "fr": "french", "es": "spanish", "it": "italian", "pt": "portuguese",
                  "ru": "russian", "nl": "dutch", "ar": "arabic", "hi": "hindi", "pl": "polish", "tr": "turkish",
                  "sv": "swedish", "uk": "ukrainian", "vi": "vietnamese", "id": "indonesian", "th": "thai"}


def words_of(start: float, end: float, text: str) -> list[dict]:
    """A line's words with its time shared out in proportion to their length (not aligned)."""
    tokens = []
    for part in text.split():
        run = ""
        for ch in part:  # CJK: each character a word; others: the run of characters between spaces
            if is_cjk(ch):
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(ch)
            else:
                run += ch
        if run:
            tokens.append(run)
    total = sum(len(t) for t in tokens)
    words, at, span = [], start, max(0.0, end - start)
    for i, token in enumerate(tokens):
        stop = end if i == len(tokens) - 1 else at + span * len(token) / total
        words.append({"word": token, "start": round(at, 3), "end": round(stop, 3)})
        at = stop
    return words


def verbose_segment(i: int, s: TimedText) -> dict:
    """One line as an OpenAI segment: the model's scores where the engine reported them (see
    transcript.Scores for what they mean for a line), left out where not; never `seek`."""
    segment = {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.display_text}
    if s.speaker is not None:
        segment["speaker"] = s.speaker
    if s.scores is not None:
        if s.scores.tokens is not None:
            segment["tokens"] = list(s.scores.tokens)
        segment.update(temperature=s.scores.temperature, avg_logprob=s.scores.avg_logprob,
                       compression_ratio=s.scores.compression_ratio, no_speech_prob=s.scores.no_speech_prob)
    return segment


def verbose_json(t: Transcript, with_words: bool) -> dict:
    segments = [verbose_segment(i, s) for i, s in enumerate(t.segments)]
    body = {"task": "transcribe", "language": LANGUAGE_NAMES.get(t.language, t.language or "unknown"),
            "duration": round(t.duration, 3), "text": t.text_itn or t.text, "segments": segments,
            "usage": {"type": "duration", "seconds": round(t.duration, 3)}}
    if with_words:
        # The model's own word times (raw words, before ITN) where the engine gave them; a line
        # without them shares its time out over its words, each marked "interpolated".
        words, kinds = [], set()
        for s in t.segments:
            if s.words:
                words += [w.to_dict() for w in s.words]
                kinds.add("model")
            else:
                words += [{**w, "interpolated": True} for w in words_of(s.start, s.end, s.display_text)]
                kinds.add("interpolated")
        body["words"] = words
        body["word_timestamps"] = kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "model"
    return body


def diarized_json(t: Transcript) -> dict:
    """OpenAI's diarizing transcription shape: each line with its speaker, and the speaker turns."""
    segments = [{"type": "transcript.text.segment", "id": f"seg_{i:03d}", "start": round(s.start, 3),
                 "end": round(s.end, 3), "text": s.display_text, "speaker": s.speaker or "unknown"}
                for i, s in enumerate(t.segments)]
    return {"task": "transcribe", "duration": round(t.duration, 3), "text": t.text_itn or t.text,
            "segments": segments, "speakers": [{"start": round(x.start, 3), "end": round(x.end, 3),
                                                "speaker": x.speaker} for x in t.turns],
            "usage": {"type": "duration", "seconds": round(t.duration, 3)}}


def respond(t: Transcript, fmt: str, with_words: bool) -> Response:
    if fmt == "json":
        return JSONResponse({"text": t.text_itn or t.text, "usage": {"type": "duration", "seconds": round(t.duration, 3)}})
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(t, with_words))
    if fmt == "diarized_json":
        return JSONResponse(diarized_json(t))
    if fmt == "text":
        return PlainTextResponse((t.text_itn or t.text) + "\n")
    if fmt == "vtt":
        return PlainTextResponse(render(t, "vtt"), media_type="text/vtt")
    return PlainTextResponse(render(t, "srt"))


