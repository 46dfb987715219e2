"""FunASREngine over tiny real funasr models (seeded random weights) loaded from local folders."""

from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tiny_models import break_checkpoint, build_tiny_paraformer, build_tiny_sensevoice, speech_like
from webui.modules.engines.base import Engine, EngineError, EngineSettings, LocalText, LocalWord
from webui.modules.engines.funasr import FunASREngine
from webui.modules.engines.funasr.checkpoint import checkpoint_problems
from webui.modules.engines.funasr.outputs import paraformer_pieces, split_sensevoice_tags

LENGTHS = [1.0, 3.5, 2.0, 0.05, 2.6, 1.4]  # 0.05 s is below what holds a word


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny")
    build_tiny_sensevoice(root / "sensevoice")
    build_tiny_paraformer(root / "paraformer")
    return root


@pytest.fixture(scope="module")
def sensevoice(tiny_dir) -> FunASREngine:
    return FunASREngine(EngineSettings(model=str(tiny_dir / "sensevoice"), device="cpu", cpu_batch_cap=6))


@pytest.fixture(scope="module")
def paraformer(tiny_dir) -> FunASREngine:
    return FunASREngine(EngineSettings(model=str(tiny_dir / "paraformer"), device="cpu"))


def audios() -> list[np.ndarray]:
    return [speech_like(s, seed=i) for i, s in enumerate(LENGTHS)]


def test_sensevoice_batch_equals_one_by_one(sensevoice):
    assert isinstance(sensevoice, Engine)
    assert (sensevoice.family.name, sensevoice.precision, sensevoice.max_input_seconds) == ("sensevoice", "fp32", 90.0)
    assert sensevoice.batch_limit(30.0) == 6  # CPU: the configured cap
    xs = audios()
    batch = sensevoice.transcribe_batch(xs)
    assert len(batch) == len(xs)
    assert batch == [sensevoice.transcribe_batch([x])[0] for x in xs]
    texts = [o.pieces[0].text for o in batch if o.pieces]
    assert len(texts) == len(xs) - 1 and len(set(texts)) == len(texts)  # junk, but distinct per input
    assert batch[3].pieces == ()
    for out, seconds in zip(batch, LENGTHS):
        assert all(p == LocalText(0.0, seconds, p.text) and "<|" not in p.text for p in out.pieces)
        assert out.itn_applied  # SenseVoice's own ITN is on by default
    sensevoice.release()


@contextlib.contextmanager
def ctc_emits(engine: FunASREngine, piece: str):
    """Bias the tiny model's CTC output layer so every frame decodes to `piece` ('<blank>':
    no text at all), whatever the seeded weights would say."""
    layer = engine._model.ctc.ctc_lo
    token = 0 if piece == "<blank>" else engine._kwargs["tokenizer"].sp.piece_to_id(piece)
    saved = layer.bias.detach().clone()
    with torch.no_grad():
        layer.bias[token] += 1e4
    try:
        yield
    finally:
        with torch.no_grad():
            layer.bias.copy_(saved)


def test_sensevoice_language_comes_from_its_tag_else_from_the_request(sensevoice):
    x = speech_like(1.5, seed=0)
    for tag, language in (("<|yue|>", "yue"), ("<|en|>", "en"), ("<|ja|>", "ja")):
        with ctc_emits(sensevoice, tag):
            out = sensevoice.transcribe_batch([x], language="auto")[0]
        assert out.language == language and out.pieces == ()  # the tag is read, never shown as text
    with ctc_emits(sensevoice, "<|yue|>"):  # the model's own tag wins over the request
        assert sensevoice.transcribe_batch([x], language="en")[0].language == "yue"
    with ctc_emits(sensevoice, "<blank>"):  # no tag: the request, or nothing when detecting
        assert sensevoice.transcribe_batch([x], language="auto")[0].language == ""
        assert sensevoice.transcribe_batch([x], language="en")[0].language == "en"
        assert sensevoice.transcribe_batch([x], language="fr")[0].language == ""  # unsupported: detect


def test_paraformer_batch_equals_one_by_one_and_uses_timestamps(paraformer):
    xs = audios()
    batch = paraformer.transcribe_batch(xs)
    assert len(batch) == len(xs)
    # Equal only because the engine zeroes encoder frames on padding (see _zero_padded_frames).
    assert batch == [paraformer.transcribe_batch([x])[0] for x in xs]
    longest = int(np.argmax(LENGTHS))
    assert batch[3].pieces == ()
    for out, seconds in zip(batch, LENGTHS):
        for piece in out.pieces:
            assert 0.0 <= piece.start <= piece.end <= seconds and piece.text and " " not in piece.text
            assert "".join(w.text for w in piece.words) == piece.text  # one word time per token
            assert (piece.words[0].start, piece.words[-1].end) == (piece.start, piece.end)
    # timestamps, not the whole input: the first token starts after 0
    assert batch[longest].pieces[0].start > 0.0


def test_a_checkpoint_with_a_missing_key_is_refused(tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir / "sensevoice", tmp_path / "broken")
    removed = break_checkpoint(folder)
    with pytest.raises(EngineError, match="1 missing") as err:
        FunASREngine(EngineSettings(model=str(folder), device="cpu"))
    assert removed in str(err.value)


def test_no_checkpoint_needs_explicit_random_weights(tiny_dir, tmp_path):
    folder = shutil.copytree(tiny_dir / "paraformer", tmp_path / "bare")
    (folder / "model.pt").unlink()
    with pytest.raises(EngineError, match="no model.pt"):
        FunASREngine(EngineSettings(model=str(folder), device="cpu"))
    engine = FunASREngine(EngineSettings(model=str(folder), device="cpu"), allow_random_weights=True)
    assert len(engine.transcribe_batch([speech_like(2.0, seed=1)])) == 1
    engine.unload()
    with pytest.raises(EngineError, match="unloaded"):
        engine.transcribe_batch([speech_like(1.0, seed=1)])


@pytest.mark.parametrize("offline_env", [True, False])
def test_a_hub_id_without_network_fails_fast_and_says_what_to_do(monkeypatch, offline_env):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MODELSCOPE_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(EngineError) as err:
        FunASREngine(EngineSettings(model="nobody-here/no-such-asr-model", device="cpu"))
    assert time.monotonic() - started < 5
    message = str(err.value)
    assert "nobody-here/no-such-asr-model" in message and "folder" in message
    assert ("HF_HUB_OFFLINE=1" in message) if offline_env else ("cannot be reached" in message)


def test_bad_model_names_and_options_fail_before_loading(tmp_path, tiny_dir):
    with pytest.raises(EngineError, match="neither a folder nor a known model"):
        FunASREngine(EngineSettings(model="no-such-model", device="cpu"))
    with pytest.raises(EngineError, match="not a FunASR model folder"):
        FunASREngine(EngineSettings(model=str(tmp_path), device="cpu"))
    with pytest.raises(EngineError, match="needs a CUDA GPU"):
        FunASREngine(EngineSettings(model=str(tiny_dir / "sensevoice"), device="cpu", precision="fp16"))


def test_sensevoice_tags_are_stripped_and_language_kept():
    assert split_sensevoice_tags("<|en|><|NEUTRAL|><|Speech|><|woitn|>ask not what") == ("en", "ask not what")
    assert split_sensevoice_tags("<|zh|><|HAPPY|><|BGM|><|withitn|>你好。") == ("zh", "你好。")
    assert split_sensevoice_tags("<|nospeech|><|Event_UNK|>") == ("", "")


def test_paraformer_pieces_split_at_pauses_and_carry_word_times():
    stamps = [[100, 300], [300, 500], [1200, 1400], [1400, 1600]]
    first, second = paraformer_pieces("欢 迎 大 家", stamps, 2.0)
    assert (first.start, first.end, first.text) == (0.1, 0.5, "欢迎")
    assert (second.start, second.end, second.text) == (1.2, 1.6, "大家")
    assert second.words == (LocalWord(1.2, 1.4, "大"), LocalWord(1.4, 1.6, "家"))
    (piece,) = paraformer_pieces("hello world", [[-30, 400], [450, 2500]], 2.0)
    assert (piece.start, piece.end, piece.text) == (0.0, 2.0, "hello world")
    assert [w.text for w in piece.words] == [" hello", " world"]
    # tokens and stamps that don't line up: one piece from first to last stamp, no word times
    assert paraformer_pieces("a b c", [[100, 200], [300, 900]], 2.0) == (LocalText(0.1, 0.9, "a b c"),)


def test_tied_weights_count_as_present():
    model = torch.nn.Sequential(torch.nn.Embedding(10, 4), torch.nn.Linear(4, 10, bias=False))
    model[1].weight = model[0].weight
    state = {"0.weight": torch.zeros(10, 4)}
    assert checkpoint_problems(model, state) == ([], [])
    assert checkpoint_problems(model, {}) == (["0.weight", "1.weight"], [])
    assert checkpoint_problems(model, {"0.weight": torch.zeros(3, 4)})[1] == ["0.weight (3, 4) != (10, 4)"]


@pytest.mark.parametrize("poison", [
    ("config.yaml", "\ntrust_remote_code: true\nremote_code: ./evil.py\n"),
    ("config.yaml", "\nmodel_conf:\n  remote_code: evil.py\n"),
    ("configuration.json", None),  # file_path_metas naming a file outside the folder
])
def test_a_folder_that_asks_to_run_code_or_read_outside_is_refused(tiny_dir, tmp_path, poison):
    import json

    folder = tmp_path / "crafted"
    shutil.copytree(tiny_dir / "sensevoice", folder)
    (folder / "evil.py").write_text("open('/tmp/pwned-by-model', 'w').write('x')\n")
    name, extra = poison
    if extra is None:
        conf = json.loads((folder / name).read_text())
        conf["file_path_metas"]["init_param"] = str(tiny_dir / "sensevoice" / "model.pt")  # absolute, outside
        (folder / name).write_text(json.dumps(conf))
        reason = "outside the model folder"
    else:
        (folder / name).write_text((folder / name).read_text() + extra)
        reason = "own Python code"
    with pytest.raises(EngineError, match=reason):
        FunASREngine(EngineSettings(model=str(folder), device="cpu"))
    assert not Path("/tmp/pwned-by-model").exists()


def test_sensevoice_word_times_spell_its_text_and_a_failed_alignment_keeps_the_text(sensevoice):
    from webui.modules.engines.funasr.outputs import sensevoice_pieces

    # Junk weights make funasr's own alignment fail on some inputs (IndexError inside funasr):
    # those keep their text without word times, the others keep theirs.
    with_times = sensevoice.transcribe_batch(audios())
    assert [bool(o.pieces) for o in with_times] == [True, True, True, False, True, True]
    for out in with_times:
        for piece in out.pieces:
            assert not piece.words or "".join(w.text for w in piece.words).strip() == piece.text
    # The parser on its own: spaces come back where the text has them, a mismatch drops the times.
    (piece,) = sensevoice_pieces("Hello, world. 你好", ["Hello", ",", "world", ".", "你", "好"],
                                 [[0, 300], [300, 320], [400, 800], [800, 820], [900, 1000], [1000, 1100]], 2.0)
    assert [w.text for w in piece.words] == ["Hello", ",", " world", ".", " 你", "好"]
    assert (piece.start, piece.end) == (0.0, 1.1)
    assert sensevoice_pieces("Hello world", ["Hello", "there"], [[0, 1], [1, 2]], 2.0)[0].words == ()
    assert sensevoice_pieces("", [], [], 2.0) == ()


# -- SenseVoice word times at linear cost (issue 17)

SCRIPT_WORDS = ["▁ask", "▁what", "▁your", "▁country", "▁can", "▁do", "▁the", "▁for"]


@contextlib.contextmanager
def scripted_ctc(engine: FunASREngine, words: list[str] = SCRIPT_WORDS):
    """Encoder frames that spell words, so the alignment has several words to time: item i
    reads `words` rotated by i, one frame each for the four query frames, then two frames and
    a blank per word. The CTC layer maps frame content (not position) to the piece, so an
    item's own slice of frames gives the logits the whole batch gave."""
    sp = engine._kwargs["tokenizer"].sp
    layer = engine._model.ctc.ctc_lo
    saved = layer.weight.detach().clone(), layer.bias.detach().clone()
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
        for k, piece in enumerate(["<unk>", *words]):  # <unk> (id 0) is SenseVoice's blank
            layer.weight[sp.piece_to_id(piece), k] = 20.0

    def script(module, args, output):
        frames, lengths = output[0], output[1]
        scripted = torch.zeros_like(frames)
        scripted[..., 0] = 1.0
        for i, n in enumerate(lengths.tolist()):
            order = [1 + (i + j) % len(words) for j in range(len(words))]
            ks = order[:4] + [k for w in order[4:] + order for k in (w, w, 0)]
            for t, k in enumerate(ks[:n]):
                scripted[i, t, 0] = 0.0
                scripted[i, t, k] = 1.0
        return scripted, lengths

    handle = engine._model.encoder.register_forward_hook(script)
    try:
        yield
    finally:
        handle.remove()
        with torch.no_grad():
            layer.weight.copy_(saved[0])
            layer.bias.copy_(saved[1])


def sensevoice_call(engine: FunASREngine, n: int) -> tuple[list[torch.Tensor], list[str], dict]:
    """Inputs of different lengths (padding in the batch), keys and model.inference keywords."""
    kwargs = {**engine._kwargs, **engine._options("auto").model_kwargs}
    kwargs.pop("batch_size", None)
    data = [torch.from_numpy(speech_like(s, seed=i)) for i, s in enumerate([1.0, 2.0, 1.5, 0.7, 3.0, 2.4][:n])]
    return data, [f"k{i}" for i in range(n)], kwargs


@pytest.mark.parametrize("scripted", [True, False], ids=["scripted-words", "junk-weights"])
def test_sensevoice_word_times_are_funasrs_own(sensevoice, scripted):
    from webui.modules.engines.funasr import sensevoice as patched

    if scripted:
        data, keys, kwargs = sensevoice_call(sensevoice, 6)
    else:  # inputs on which funasr's own alignment of the junk text does not fail
        kwargs = sensevoice_call(sensevoice, 1)[2]
        data, keys = [torch.from_numpy(speech_like(2.0 + s, seed=s)) for s in (0, 1, 3, 4)], ["a", "b", "c", "d"]
    failures: list[BaseException] = []
    with scripted_ctc(sensevoice) if scripted else contextlib.nullcontext(), torch.inference_mode():
        funasr_own, _ = sensevoice._model.inference(data_in=data, key=keys, **kwargs)
        ours = patched.transcribe(sensevoice._model, data, keys, kwargs, failures.append)
    assert ours == funasr_own and not failures
    assert all(r.get("timestamp") for r in ours)
    if scripted:  # several words each, the last one's end clamped as funasr clamps it
        assert min(len(r["words"]) for r in ours) >= 4
        assert ours[2]["timestamp"][-1] == [1410, 1470]


def test_an_item_whose_alignment_fails_loses_only_its_own_word_times(sensevoice):
    from webui.modules.engines.funasr import sensevoice as patched

    kwargs = sensevoice_call(sensevoice, 1)[2]
    aligns, fails, longest = (torch.from_numpy(speech_like(2.0 + s, seed=s)) for s in (0, 2, 4))
    failures: list[BaseException] = []
    with torch.inference_mode():
        with pytest.raises(IndexError):  # funasr: the whole batch fails
            sensevoice._model.inference(data_in=[aligns, fails, longest], key=["a", "b", "c"], **kwargs)
        funasr_own, _ = sensevoice._model.inference(data_in=[aligns, longest], key=["a", "c"], **kwargs)
        ours = patched.transcribe(sensevoice._model, [aligns, fails, longest], ["a", "b", "c"], kwargs,
                                  failures.append)
    assert [type(f) for f in failures] == [IndexError]
    assert [ours[0], ours[2]] == funasr_own and set(ours[1]) == {"key", "text"} and ours[1]["text"]


def test_sensevoice_word_times_cost_grows_linearly_with_the_batch(sensevoice, monkeypatch):
    """funasr recomputed ctc.log_softmax over the whole batch once per item (quadratic); now
    the text takes one whole-batch call and each item's timing one call on its own frames."""
    seen: list[tuple[int, ...]] = []
    log_softmax = sensevoice._model.ctc.log_softmax

    def counted(frames):
        seen.append(tuple(frames.shape))
        return log_softmax(frames)

    monkeypatch.setattr(sensevoice._model.ctc, "log_softmax", counted)
    data, _, _ = sensevoice_call(sensevoice, 4)
    with scripted_ctc(sensevoice):
        outputs = sensevoice.transcribe_batch([x.numpy() for x in data])
    assert all(o.pieces for o in outputs)
    whole_batch = [s for s in seen if s[0] > 1]
    assert len(whole_batch) == 1, f"{len(whole_batch)} log_softmax calls over the whole batch: {seen}"
    per_item = [s for s in seen if s[0] == 1]  # one per item, on its frames past the queries
    assert len(per_item) == 4 and all(s[1] <= whole_batch[0][1] - 4 for s in per_item)


# -- Fun-ASR-Nano calibration decodes to its length bound (issue 17)

class NanoDouble(torch.nn.Module):
    """Fun-ASR-Nano's inference signature; records each call's keywords."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict] = []

    def inference(self, data_in, key, **kwargs):
        self.calls.append(kwargs)
        return [{"key": k, "text": "好"} for k in key], {}


class FreeBytes:
    def free_bytes(self) -> int:
        return 8 * 2**30


@pytest.mark.parametrize("config_max_length", [None, 300])
def test_nano_calibration_decodes_to_max_length(tmp_path, monkeypatch, config_max_length):
    from types import SimpleNamespace

    (tmp_path / "config.yaml").write_text("model: FunASRNano\n")
    nano = NanoDouble()
    config = {} if config_max_length is None else {"max_length": config_max_length}
    monkeypatch.setattr(FunASREngine, "_build", lambda self: SimpleNamespace(model=nano, kwargs=config))
    monkeypatch.setattr(FunASREngine, "_on_cuda", property(lambda self: True))  # calibration runs on CUDA only
    engine = FunASREngine(EngineSettings(model=str(tmp_path), device="cpu"), FreeBytes(), allow_random_weights=True)
    bound = config_max_length or 512  # funasr's own default for Fun-ASR-Nano
    assert len(nano.calls) >= 2  # every calibration batch runs the LLM to its bound, EOS held off
    for call in nano.calls:
        assert call.get("max_length") == bound and call.get("llm_kwargs", {}).get("min_new_tokens") == bound
    nano.calls.clear()
    engine.transcribe_batch([speech_like(2.0, seed=0)])
    (call,) = nano.calls  # a real batch keeps the bound but stops at EOS
    assert call["max_length"] == bound and "min_new_tokens" not in call.get("llm_kwargs", {})
