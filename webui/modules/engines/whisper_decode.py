"""Whisper's decode of one CTranslate2 batch, from the encoder output on: the decode at
temperature 0 (greedy or beam), Whisper's temperature fallback for the inputs whose text fails
its checks (accurate mode), and the tokens as faster-whisper segments with word times.

This is faster-whisper's BatchedInferencePipeline.forward with the fallback that pipeline lacks
(its sequential transcribe has it, one 30-s window at a time); here the failing inputs of a
batch are decoded again together. And the decode of an input that ended early goes on from its
own text over the encoder output it already has (`resumed`), where a sequential decoder would
seek and encode again.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Callable, Sequence

from ..transcript import MIN_WORDS_PER_SECOND, STRETCHED_WORD_SECONDS, UNWRITTEN_SECONDS, spoken_seconds

# Whisper's fallback ladder (openai-whisper and faster-whisper use the same): temperature 0 first,
# then sampling at rising temperatures while the text fails the checks.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)

# rows -> the encoder output of those inputs of the batch only (what a fallback decodes again)
RowsOf = Callable[[list[int]], object]
# (work, rows) -> [work(part) for each part of rows], in order: how a batch's work is shared out
# (WhisperEngine._side_by_side: on the CPU two halves at once, on CTranslate2's two workers)
Parts = Callable[[Callable[[list[int]], object], list[int]], list]


def whole(work: Callable[[list[int]], object], rows: list[int]) -> list:
    return [work(rows)]


@dataclass(frozen=True)
class Decoded:
    """One input's decode at one temperature, with what Whisper's fallback rule looks at."""

    tokens: list[int]
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float

    @classmethod
    def of(cls, result, temperature: float, tokenizer, length_penalty: float) -> "Decoded":
        from faster_whisper.transcribe import get_compression_ratio

        tokens = list(result.sequences_ids[0])
        cum_logprob = result.scores[0] * (len(tokens) ** length_penalty)
        return cls(tokens, cum_logprob / (len(tokens) + 1), float(result.no_speech_prob), temperature,
                   get_compression_ratio(tokenizer.decode(tokens).strip()))

    def needs_fallback(self, options) -> bool:
        """Whisper's rule: too repetitive, or a weak decode that is not silence."""
        if self.no_speech_prob > options.no_speech_threshold and self.avg_logprob < options.log_prob_threshold:
            return False  # silence: a weak decode is expected
        return self.compression_ratio > options.compression_ratio_threshold or \
            self.avg_logprob < options.log_prob_threshold


def pick(tried: list[Decoded], options) -> Decoded:
    """The last decode if it passed; when every temperature failed, the likeliest of those that
    were not too repetitive (of all, if none), as Whisper's transcribe picks."""
    if len(tried) == 1 or not tried[-1].needs_fallback(options):
        return tried[-1]
    calm = [d for d in tried if d.compression_ratio <= options.compression_ratio_threshold]
    return max(calm or tried, key=lambda d: d.avg_logprob)


def decode(model, encoder_output, count: int, rows_of: RowsOf, tokenizer, options, parts: Parts = whole
           ) -> list[Decoded]:
    """The `count` inputs of the batch decoded at temperature 0 (beam or greedy, together); with
    more than one temperature (accurate mode), the inputs whose text fails Whisper's checks are
    decoded again at the next temperature, together, until they pass or the ladder ends.

    `model` is faster-whisper's WhisperModel. Sampling draws from CTranslate2's own generator,
    which takes no seed per call: a fallback's text can differ between two runs of the same
    input (a resumed accurate-mode window may not repeat it word for word; the default mode
    never samples)."""
    prompt = model.get_prompt(tokenizer, [], without_timestamps=options.without_timestamps, hotwords=options.hotwords)
    tried: list[list[Decoded]] = [[] for _ in range(count)]
    todo = list(range(count))
    for temperature in options.temperatures:
        def run(rows: list[int], temperature: float = temperature) -> list:
            return _generate(model, encoder_output if len(rows) == count else rows_of(rows),
                             [list(prompt) for _ in rows], options, temperature, options.suppress_blank)

        results = [result for part in parts(run, todo) for result in part]
        for k, result in zip(todo, results):
            tried[k].append(Decoded.of(result, temperature, tokenizer, options.length_penalty))
        todo = [k for k in todo if tried[k][-1].needs_fallback(options)]
        if not todo:
            break
    return [pick(t, options) for t in tried]


def _generate(model, features, prompts: list[list[int]], options, temperature: float, suppress_blank: bool) -> list:
    """One CTranslate2 decode of the rows in `features` from their `prompts`, with Whisper's
    options (the first decode and a resumed one differ only in prompt and suppress_blank)."""
    return model.model.generate(
        features, prompts, length_penalty=options.length_penalty, max_length=model.max_length,
        suppress_blank=suppress_blank, suppress_tokens=options.suppress_tokens, return_scores=True,
        return_no_speech_prob=True, repetition_penalty=options.repetition_penalty,
        no_repeat_ngram_size=options.no_repeat_ngram_size, **_search(temperature, options))


def _search(temperature: float, options) -> dict:
    """CTranslate2's search arguments: beam (or greedy) at 0, else best_of samples, as
    faster-whisper's sequential transcribe does."""
    if temperature > 0:
        return {"beam_size": 1, "num_hypotheses": options.best_of, "sampling_topk": 0,
                "sampling_temperature": temperature}
    return {"beam_size": options.beam_size, "patience": options.patience}


def segments(model, decoded: list[Decoded], durations: list[float], tokenizer, encoder_output, options,
             origins: Sequence[float], groups: list[list[int]] | None = None, rows_of: RowsOf | None = None,
             parts: Parts = whole) -> list[list[dict]]:
    """faster-whisper's BatchedInferencePipeline.forward from the decode on: each input's tokens
    as segments (one per input without timestamp tokens), input k timed from `origins[k]`,
    then the word times (from no earlier speech: every input is timed on its own).

    With `groups` (and `rows_of` for their encoder output) the word times are aligned a group
    at a time: CTranslate2's align holds every position's logits over the whole vocabulary
    (inputs x tokens x 51,865 floats: 230 MB for 8 inputs of Dutch dialogue), so on the CPU the
    batch that decodes together is aligned in smaller runs. `parts` shares each run out (as
    `decode` does); `rows_of` gives a part's encoder output when it is not the whole batch."""
    from faster_whisper.transcribe import get_compression_ratio

    out, sizes = [], []
    for k, (d, duration) in enumerate(zip(decoded, durations)):
        origin = origins[k]
        size = int(ceil(duration) * model.frames_per_second)
        sizes.append(size)
        subsegments = split_by_timestamps(model, tokenizer, d.tokens, origin, size, duration,
                                          options.compression_ratio_threshold)
        out.append([dict(text=tokenizer.decode(s["tokens"]), avg_logprob=d.avg_logprob,
                         no_speech_prob=d.no_speech_prob, tokens=s["tokens"], start=s["start"], end=s["end"],
                         compression_ratio=get_compression_ratio(tokenizer.decode(s["tokens"])),
                         seek=int(origin * model.frames_per_second), temperature=d.temperature)
                    for s in subsegments])

    def align(rows: list[int]) -> None:
        if any(out[k] for k in rows):
            model.add_word_timestamps([out[k] for k in rows], tokenizer,
                                      encoder_output if len(rows) == len(out) else rows_of(rows),
                                      [sizes[k] for k in rows], options.prepend_punctuations,
                                      options.append_punctuations, 0.0)

    if options.word_timestamps and any(out):
        for rows in groups or [list(range(len(out)))]:
            parts(align, rows)
    return out


def split_by_timestamps(model, tokenizer, tokens: list[int], offset: float, size: int, duration: float,
                        max_compression: float) -> list[dict]:
    """The input's tokens as faster-whisper's segments, and the segment left open at the end
    kept (from its opening timestamp to the input's end) unless it loops (compresses more than
    `max_compression`, Whisper's check): a sequential decoder drops it to decode it again from
    there; a batched one has no "again", and its text is speech the input holds (Chinese is
    decoded with timestamp tokens: engines/whisper_ct2.py). What is dropped is left to the
    second pass (the text stops early)."""
    from faster_whisper.transcribe import get_compression_ratio

    subsegments, _, _ = model._split_segments_by_timestamps(
        tokenizer=tokenizer, tokens=tokens, time_offset=offset, segment_size=size, segment_duration=duration, seek=0)
    used = sum(len(s["tokens"]) for s in subsegments)
    rest = list(tokens[used:])
    text = tokenizer.decode(rest).strip() if subsegments else ""
    if text and get_compression_ratio(text) <= max_compression:
        opened = rest[0] - tokenizer.timestamp_begin if rest[0] >= tokenizer.timestamp_begin else None
        start = offset + opened * model.time_precision if opened is not None else subsegments[-1]["end"]
        subsegments.append(dict(seek=0, start=min(start, offset + duration), end=offset + duration, tokens=rest))
    return subsegments


# ----------------------------------------------------------------------------- early ends

# Whisper often writes a packed input's first utterances in full and then ends (end-of-text with
# speech left: Spanish, Italian and French telephone prompts, again and again). The input is
# encoded already: its decode goes on from its own text, with the end-of-text barred for one token,
# instead of running the rest as a new input (second_pass.py), which costs an encoder pass each.
MAX_RESUMES = 3   # rounds: a resumed decode may end early again


def resumed(model, decoded: list[Decoded], timed: list[list[dict]], durations: list[float], origins: Sequence[float],
            tokenizer, options, rows_of: RowsOf, retime: Callable[[list[int], list[Decoded]], list[list[dict]]],
            parts: Parts = whole) -> tuple[list[Decoded], list[list[dict]]]:
    """The batch's decodes (`decoded`, and `timed`: their segments with word times), where the
    text of an input is whole up to where it ended early, resumed from that text over the input's
    encoder output (`rows_of`), a round at a time. A resumed text is kept when it reaches further,
    is whole (no gap left for unwritten speech, no word stretched, enough words), and passes
    Whisper's own checks; else the first text stays and the second pass runs the rest.
    Input k is timed from `origins[k]` (as `segments` times it); `retime(rows, decodes)` gives
    those rows' segments with word times.
    A round is one decode with the text as its prefix. With suppress_blank, CTranslate2 bars
    end-of-text and a bare space at each row's first step after its prefix, so the decode goes on
    past where it ended and then as usual. The whole text is the prefix: CTranslate2 runs a
    prefix through the decoder a token at a time (about what writing it costs), but the end of the
    text alone (12-24 tokens) loses the place: on French prompts it skipped the next prompt."""
    decoded, timed = list(decoded), list(timed)
    prompt = model.get_prompt(tokenizer, [], without_timestamps=True, hotwords=options.hotwords)
    settled: set[int] = set()
    for _ in range(MAX_RESUMES):
        late = [k for k in range(len(decoded)) if k not in settled
                and ended_early(timed[k], durations[k], origins[k])]
        if not late:
            break
        # CTranslate2's Whisper returns at most max_length / 2 tokens, the prefix included (4.x)
        rows = [k for k in late if len(decoded[k].tokens) + 1 < model.max_length // 2]
        settled.update(k for k in late if k not in rows)
        if not rows:
            break

        def run(part: list[int]) -> list:  # suppress_blank: end-of-text barred right after the text
            return _generate(model, rows_of(part), [prompt + decoded[k].tokens for k in part], options, 0.0, True)

        results = [r for part in parts(run, rows) for r in part]
        # the first decode's mean counts its early end-of-text too; the first token of the
        # resumption was scored with end-of-text barred
        candidates = {k: _continued(decoded[k], len(decoded[k].tokens) + 1, r, tokenizer, options.length_penalty)
                      for k, r in zip(rows, results)}
        settled.update(k for k, c in candidates.items() if c.needs_fallback(options))
        rows = [k for k in rows if k not in settled]  # only texts that pass Whisper's checks are timed
        for k, segs in zip(rows, retime(rows, [candidates[k] for k in rows]) if rows else []):
            if _reaches_further(timed[k], segs, origins[k]):
                decoded[k], timed[k] = candidates[k], segs
            else:
                settled.add(k)
    return decoded, timed


def ended_early(segs: list[dict], duration: float, origin: float) -> bool:
    """The text is whole up to where it stops, and stops more than UNWRITTEN_SECONDS before the
    input's end. (Text that is thin or skipped speech on the way is left to the second pass.)"""
    words = _words(segs)
    return bool(words) and duration - (words[-1]["end"] - origin) > UNWRITTEN_SECONDS and written_through(words, origin)


def written_through(words: list[dict], origin: float) -> bool:
    """Words (faster-whisper's, times from `origin`) that account for the input up to the last:
    no gap of UNWRITTEN_SECONDS, no word stretched, at least MIN_WORDS_PER_SECOND."""
    if not words:
        return False
    gaps = (b["start"] - a for a, b in zip([origin] + [w["end"] for w in words[:-1]], words))
    return max(gaps) <= UNWRITTEN_SECONDS \
        and max(w["end"] - w["start"] for w in words) <= STRETCHED_WORD_SECONDS \
        and len(words) >= MIN_WORDS_PER_SECOND * (words[-1]["end"] - origin)


def _words(segs: list[dict]) -> list[dict]:
    return [w for s in segs for w in s.get("words") or ()]


def _reaches_further(before: list[dict], after: list[dict], origin: float) -> bool:
    old, new = _words(before), _words(after)
    return bool(old) and len(new) > len(old) and new[-1]["end"] > old[-1]["end"] and written_through(new, origin)


# ----------------------------------------------------------------------------- skipped utterances

# Whisper base skips whole utterances of a packed Mandarin input: it closes one segment and opens
# the next seconds later, or ends, with speech between (a teacher's 12-s turn written as four
# characters). Chinese is decoded with timestamp tokens (whisper_ct2.py), so the decode can be sent
# back to such an utterance over the encoder output it already has: its segments before it as the
# prefix, then the utterance's start as the next segment's opening timestamp. The decoder writes
# that utterance, and usually the ones after it. A sequential decoder would seek and encode again;
# the second pass would run the utterances again as inputs of their own, two at a time, an
# encoder pass each.
# Measured on Mandarin (2 CPU cores, vs_faster_whisper.py, default mode): long_zh 41 -> 22 inputs
# at 21.15 -> 19.83 % CER, dialog_zh 42 -> 31 at 21.53 -> 21.00 %, real_zh 7 -> 3 at 24.57 ->
# 15.57 %, each 15-20 % faster. Judging by the word times as well (what the
# second pass reads) gave 18.13 % on long_zh with 23 inputs in 30 % more time, and no better on a
# dialogue. The decode's text as Whisper's previous text (its prompt, read in one step) instead of
# a forced prefix (run through a token at a time, as dear as writing it again) saved that time
# and lost the place: 18.65 % with 31 inputs, real_zh back at 24.6 %.
MAX_SEEKS = 3           # rounds: each sends every input to its first utterance still unwritten
MIN_UNWRITTEN = 1.0     # seconds: a shorter stretch (a lone "对") is not worth a decode of the input
WRITTEN_SHARE = 0.5     # an utterance whose text accounts for less than this share is unwritten
SEEK_SLACK = 0.2        # seconds: a segment may close this far into the utterance and stay
SEEK_ROOM = 32          # tokens a decode sent back must have left to write (sought)


@dataclass(frozen=True)
class Opened:
    """A segment of a timestamped decode: local seconds, its end None while it is left open."""

    start: float
    end: float | None
    tokens: tuple[int, ...]
    last: int  # index in the decode's tokens of its closing timestamp (or its last token)


def sought(model, decoded: list[Decoded], durations: list[float], utterances: Sequence[Sequence[tuple[float, float]]],
           tokenizer, options, rows_of: RowsOf, parts: Parts = whole) -> list[Decoded]:
    """The batch's timestamped decodes, each sent back to the first utterance its text leaves
    unwritten (`utterances`: each input's local (start, end) of speech between pauses; see
    `gaps`), a round at a time. A new decode is kept when it leaves fewer seconds unwritten and
    passes Whisper's own checks; else the input tries its next stretch in the next round. What is
    still unwritten is left to the second pass. It reads the timestamp tokens only: the words are
    timed after, once, on the decodes kept (an alignment is a decoder pass over the whole text)."""
    decoded = list(decoded)
    prompt = model.get_prompt(tokenizer, [], without_timestamps=False, hotwords=options.hotwords)
    tried: list[set[float]] = [set() for _ in decoded]

    def unwritten(tokens: Sequence[int], k: int) -> list[tuple[list[float], float]]:
        segs = opened_segments(tokens, tokenizer, model.time_precision)
        return gaps([(s.start, durations[k] if s.end is None else s.end, spoken_seconds(tokenizer.decode(list(s.tokens))))
                     for s in segs], utterances[k])

    for _ in range(MAX_SEEKS):
        seeks: dict[int, list[int]] = {}
        for k, d in enumerate(decoded):
            for at in (at for places, _ in unwritten(d.tokens, k) for at in places if at not in tried[k]):
                prefix = seek_prefix(d.tokens, at, tokenizer, model.time_precision)
                # CTranslate2's Whisper returns at most max_length / 2 tokens, the prefix included
                # (4.x): a prefix must leave room to write; and one the decode already starts with
                # would only bring the same decode back
                if len(prefix) + SEEK_ROOM <= model.max_length // 2 and d.tokens[:len(prefix)] != prefix:
                    tried[k].add(at)
                    seeks[k] = prefix
                    break
        if not seeks:
            break
        rows = sorted(seeks)

        def run(part: list[int]) -> list:  # suppress_blank: no end-of-text right after the timestamp
            return _generate(model, rows_of(part), [prompt + seeks[k] for k in part], options, 0.0, True)

        for k, result in zip(rows, [r for part in parts(run, rows) for r in part]):
            candidate = _continued(decoded[k], len(seeks[k]), result, tokenizer, options.length_penalty)
            if not candidate.needs_fallback(options) and \
                    _seconds(unwritten(candidate.tokens, k)) < _seconds(unwritten(decoded[k].tokens, k)):
                decoded[k] = candidate
    return decoded


def opened_segments(tokens: Sequence[int], tokenizer, precision: float) -> list[Opened]:
    """A timestamped decode's segments in order (text before any timestamp starts at 0)."""
    out: list[Opened] = []
    start, text = 0.0, []
    opened = False
    for i, t in enumerate(tokens):
        if t < tokenizer.timestamp_begin:
            if t < tokenizer.eot:
                text.append(t)
            continue
        at = (t - tokenizer.timestamp_begin) * precision
        if opened and text:
            out.append(Opened(start, at, tuple(text), i))
            opened, text = False, []
        else:
            start, opened = at, True
    if text:
        out.append(Opened(start, None, tuple(text), len(tokens) - 1))
    return out


def gaps(spans: Sequence[tuple[float, float, float]], utterances: Sequence[tuple[float, float]]
         ) -> list[tuple[list[float], float]]:
    """Where the text leaves speech unwritten, in order: each stretch as the places a decode may be
    sent to (local seconds) and its seconds of speech. `spans`: the text's segments as (start,
    end, seconds of speech their text can account for: transcript.spoken_seconds, as the second
    pass counts).
    - A run of utterances the segments over each account for less than WRITTEN_SHARE of (a
      segment over several shares its text out by how much of it lies in each); each start is a
      place, and so is where text that stops inside one ends (a 16-s turn of several speakers
      written for its first 2 s, from where the decode already starts).
    - The speech after the text's end (a decode that ended early), from where the text ends
      inside an utterance (when MIN_UNWRITTEN or more of it is left), or from the next.
    Stretches under MIN_UNWRITTEN seconds are left out."""
    end = max((b for _, b, _ in spans), default=None)
    out: list[tuple[list[float], float]] = []
    places: list[float] = []
    seconds = 0.0
    for lo, hi in utterances:
        share = sum(w * (min(hi, b) - max(lo, a)) / max(b - a, 1e-3) for a, b, w in spans if min(hi, b) > max(lo, a))
        if share < WRITTEN_SHARE * (hi - lo):
            # its start, and where text that stops inside it ends (a decode that starts there
            # already would only come back the same)
            inside = [b for _, b, _ in spans if lo < b <= hi - MIN_UNWRITTEN]
            places += [lo] + ([max(inside)] if inside else [])
            seconds += hi - lo
            continue
        if places:
            out.append((places, seconds))
        places, seconds = [], 0.0
        if end is not None and hi - max(lo, end) >= MIN_UNWRITTEN:
            places, seconds = [max(lo, end)], hi - max(lo, end)  # the text ends inside this utterance
    if places:
        out.append((places, seconds))
    return [(p, sec) for p, sec in out if sec >= MIN_UNWRITTEN]


def _seconds(stretches: Sequence[tuple[list[float], float]]) -> float:
    return sum(seconds for _, seconds in stretches)


def seek_prefix(tokens: Sequence[int], at: float, tokenizer, precision: float) -> list[int]:
    """The decode's tokens through its last complete segment that closes before `at` (or up to
    SEEK_SLACK after it), then the opening timestamp of the next at `at` (never before the close)."""
    before = [s for s in opened_segments(tokens, tokenizer, precision) if s.end is not None and s.end <= at + SEEK_SLACK]
    head = list(tokens[:before[-1].last + 1]) if before else []
    since = before[-1].end if before else 0.0
    opening = min(int(round(max(at, since) / precision)), int(round(30.0 / precision)))
    return head + [tokenizer.timestamp_begin + opening]


def _continued(first: Decoded, counted: int, result, tokenizer, length_penalty: float) -> Decoded:
    """A decode that went on over the first's encoder output, from a prefix of the first's tokens
    (`resumed`: all of them; `sought`: its segments before the place, and an opening timestamp),
    as one decode. CTranslate2 returns the whole sequence and scores only the tokens it
    generated (their sum over the whole length); `counted` of the first decode's tokens count at
    its mean log-probability."""
    from faster_whisper.transcribe import get_compression_ratio

    tokens = list(result.sequences_ids[0])
    total = first.avg_logprob * counted + result.scores[0] * len(tokens) ** length_penalty
    return Decoded(tokens, total / (len(tokens) + 1), first.no_speech_prob, first.temperature,
                   get_compression_ratio(tokenizer.decode(tokens).strip()))
