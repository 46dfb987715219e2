"""SenseVoice word times at a cost linear in the batch.

funasr's SenseVoiceSmall.inference(output_timestamp=True) recomputes ctc.log_softmax over the
WHOLE batch once per item (B x T x 25,055 floats each time): quadratic time and a batch-sized
buffer per item, so bigger batches ran slower per item. Here funasr decodes the text with
output_timestamp=False, its encoder output is caught on the way out, and each item is aligned on
its own frames with funasr's alignment steps unchanged, so text and times are funasr's own.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from ... import gpu

QUERY_FRAMES = 4  # language, event, emotion and text-norm queries lead the encoder output
FRAME_MS = 60  # one encoder frame: 6 stacked 10 ms fbank frames (LFR)
UNKNOWN_PIECE_ID = 124  # what funasr aligns a piece to when the tokenizer gives it no id


@dataclass(frozen=True)
class WordTimes:
    timestamp: list[list[int]]  # [start_ms, end_ms] per word, funasr's `timestamp`
    words: list[str]


@dataclass(frozen=True)
class EncoderOutput:
    frames: torch.Tensor  # (batch, padded frames, dim)
    lengths: torch.Tensor  # (batch,) frames per item


@contextlib.contextmanager
def caught_encoder_output(model: torch.nn.Module) -> Iterator[list[EncoderOutput]]:
    """What model.encoder returns while inside; only this thread's calls, should the model be shared."""
    caught: list[EncoderOutput] = []
    owner = threading.get_ident()

    def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        if threading.get_ident() == owner:
            frames, lengths = output[0], output[1]
            caught.append(EncoderOutput(frames[0] if isinstance(frames, tuple) else frames, lengths))

    handle = model.encoder.register_forward_hook(hook)  # on a compiled encoder too: it runs outside the graph
    try:
        yield caught
    finally:
        handle.remove()


def transcribe(model: Any, data_in: Sequence[torch.Tensor], key: Sequence[str], kwargs: Mapping[str, Any],
               on_failure: Callable[[BaseException], None]) -> list[dict]:
    """model.inference(data_in, key, **kwargs) with output_timestamp=True: the same results, at a
    cost linear in the batch. An item whose alignment fails keeps its text without times, and
    only that item (funasr fails the whole batch); `on_failure` hears why."""
    with caught_encoder_output(model) as caught:
        results, _ = model.inference(data_in=list(data_in), key=list(key), **{**kwargs, "output_timestamp": False})
    out = caught[-1]
    for i, result in enumerate(results):
        length = out.lengths[i]
        try:
            times = word_times(model, kwargs["tokenizer"], out.frames[i:i + 1, :int(length)], length, result["text"])
        except (IndexError, ValueError, RuntimeError) as exc:
            if gpu.is_oom(exc):
                raise
            on_failure(exc)
            continue
        if times is not None:
            result.update(timestamp=times.timestamp, words=times.words)
    return results


def word_times(model: Any, tokenizer: Any, frames: torch.Tensor, length: torch.Tensor, text: str) -> WordTimes | None:
    """funasr's SenseVoice alignment for one item: `frames` (1, length, dim) are its encoder
    output without padding, `length` funasr's 0-d length tensor (its arithmetic decides the
    last word's end, kept as funasr does it). None when no token follows the tags. IndexError
    as in funasr when a piece encodes to several ids (sentencepiece's '▁' prefix) and the
    alignment so finds more words than pieces."""
    tokens = tokenizer.text2tokens(text)[QUERY_FRAMES:]
    token_ids = [i for ids in tokenizer.tokens2ids(tokens) for i in (ids or [UNKNOWN_PIECE_ID])]
    if not token_ids:
        return None
    logits = model.ctc.log_softmax(frames[:, QUERY_FRAMES:])[0]  # this item's frames only
    logits[logits.argmax(-1) == model.blank_id, model.blank_id] = 0
    align = _forced_align(logits.unsqueeze(0).float(), torch.tensor([token_ids], device=logits.device),
                          (length - QUERY_FRAMES).long(), model.ignore_id)
    half = FRAME_MS // 2
    last_end = ((length - QUERY_FRAMES) * FRAME_MS - half) / 1000
    segments, start, token = [], 0, 0
    for piece, run in groupby(align[0].tolist()):
        end = start + len(list(run))
        if piece != 0:  # funasr's test for blank, whatever blank_id says
            left, right = max((start * FRAME_MS - half) / 1000, 0), min((end * FRAME_MS - half) / 1000, last_end)
            segments.append([tokens[token], left, right])
            token += 1
        start = end
    timestamp, words = model.post(segments)
    return WordTimes(timestamp, words)


def _forced_align(logits: torch.Tensor, targets: torch.Tensor, frames: torch.Tensor, ignore_id: int) -> torch.Tensor:
    from funasr.models.sense_voice.utils.ctc_alignment import ctc_forced_align

    target_lengths = torch.tensor([targets.size(1)], device=targets.device)
    return ctc_forced_align(logits, targets.long(), frames, target_lengths, ignore_id=ignore_id)
