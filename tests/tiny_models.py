"""Tiny FunASR model folders for tests: real funasr architectures, seeded random weights.

The folders mirror the published layouts (and ../shared/gpu-kit/{sensevoice,paraformer}):
config.yaml + configuration.json whose `file_path_metas` point funasr at the tokenizer,
am.mvn and the checkpoint, so `funasr.AutoModel(model=folder)` loads them offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# Shared by both models: 80 mel bins stacked 7 at a time (LFR) = 560 inputs, as published.
_FRONTEND_YAML = """\
frontend: WavFrontend
frontend_conf:
    fs: 16000
    window: hamming
    n_mels: 80
    frame_length: 25
    frame_shift: 10
    lfr_m: 7
    lfr_n: 6
    cmvn_file: null
"""

_ENCODER_YAML = """\
encoder_conf:
    output_size: 64
    attention_heads: 4
    linear_units: 128
    num_blocks: 2
{extra}    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    attention_dropout_rate: 0.1
    input_layer: pe
    pos_enc_class: SinusoidalPositionEncoder
    normalize_before: true
    kernel_size: 11
    sanm_shfit: 0
    selfattention_layer_type: sanm
"""

SENSEVOICE_YAML = (
    "encoder: SenseVoiceEncoderSmall\n"
    + _ENCODER_YAML.format(extra="    tp_blocks: 1\n")
    + """
model: SenseVoiceSmall
model_conf:
    length_normalized_loss: true
    sos: 1
    eos: 2
    ignore_id: -1

tokenizer: SentencepiecesTokenizer
tokenizer_conf:
  bpemodel: null
  unk_symbol: <unk>
  split_with_space: true

"""
    + _FRONTEND_YAML
)

PARAFORMER_YAML = (
    """model: Paraformer
model_conf:
    ctc_weight: 0.0
    lsm_weight: 0.1
    length_normalized_loss: true
    predictor_weight: 1.0
    predictor_bias: 1
    sampling_ratio: 0.75

encoder: SANMEncoder
"""
    + _ENCODER_YAML.format(extra="")
    + """
decoder: ParaformerSANMDecoder
decoder_conf:
    attention_heads: 4
    linear_units: 128
    num_blocks: 2
    dropout_rate: 0.1
    positional_dropout_rate: 0.1
    self_attention_dropout_rate: 0.1
    src_attention_dropout_rate: 0.1
    att_layer_num: 2
    kernel_size: 11
    sanm_shfit: 0

predictor: CifPredictorV2
predictor_conf:
    idim: 64
    threshold: 1.0
    l_order: 1
    r_order: 1
    tail_threshold: 0.45

"""
    + _FRONTEND_YAML
    + """
tokenizer: CharTokenizer
tokenizer_conf:
  unk_symbol: <unk>

ctc_conf:
    dropout_rate: 0.0
    ctc_type: builtin
    reduce: true
    ignore_nan_grad: true
normalize: null
"""
)

# SenseVoice's rich tags are ordinary pieces of its vocabulary; keeping some here lets
# random weights emit them, so tag stripping is exercised.
SENSEVOICE_TAGS = ("<|zh|>", "<|en|>", "<|yue|>", "<|ja|>", "<|ko|>", "<|nospeech|>",
                   "<|NEUTRAL|>", "<|HAPPY|>", "<|Speech|>", "<|BGM|>", "<|woitn|>", "<|withitn|>")
_SPM_LINES = (
    "ask not what your country can do for you",
    "ask what you can do for your country",
    "the quick brown fox jumps over the lazy dog",
    "a long recording turns into timestamped text",
    "speech recognition with tiny random weights",
)


def _write_am_mvn(path: Path, dim: int = 560) -> None:
    """Kaldi-nnet CMVN as funasr reads it: shifts (negated means) then inverse stddevs."""
    shift = " ".join(["-10"] * dim)
    scale = " ".join(["0.25"] * dim)
    path.write_text(
        f"<Nnet>\n<Splice> {dim} {dim}\n[ 0 ]\n<AddShift> {dim} {dim}\n<LearnRateCoef> 0 [ {shift} ]\n"
        f"<Rescale> {dim} {dim}\n<LearnRateCoef> 0 [ {scale} ]\n</Nnet>\n"
    )


def _write_configuration(folder: Path, tokenizer_conf: dict[str, str]) -> None:
    conf = {
        "framework": "pytorch",
        "task": "auto-speech-recognition",
        "model": {"type": "funasr"},
        "pipeline": {"type": "funasr-pipeline"},
        "file_path_metas": {
            "init_param": "model.pt",
            "config": "config.yaml",
            "tokenizer_conf": tokenizer_conf,
            "frontend_conf": {"cmvn_file": "am.mvn"},
        },
    }
    (folder / "configuration.json").write_text(json.dumps(conf, indent=1))


def _save_seeded_checkpoint(folder: Path, seed: int) -> None:
    """Instantiate the architecture through funasr itself and save its state_dict."""
    from funasr import AutoModel

    # build_model seeds torch from `seed`; ncpu keeps it off torch's global thread count.
    model, _ = AutoModel.build_model(model=str(folder), device="cpu", seed=seed,
                                     ncpu=torch.get_num_threads(), disable_update=True)
    # Random init makes the CTC/decoder logits nearly flat; widen them so greedy decoding
    # emits a varied (junk but deterministic) token sequence instead of all blanks.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and ("ctc" in name or "output_layer" in name):
                param.mul_(8.0)
    torch.save(model.state_dict(), folder / "model.pt")


def build_tiny_sensevoice(folder: Path, seed: int = 0) -> Path:
    """SenseVoiceSmall layout: config.yaml, bpe.model (sentencepiece), am.mvn, model.pt."""
    import sentencepiece as spm

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(SENSEVOICE_YAML)
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_SPM_LINES * 4) + "\n")
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "bpe"), vocab_size=80, model_type="bpe",
        user_defined_symbols=list(SENSEVOICE_TAGS), character_coverage=1.0, minloglevel=2,
    )
    corpus.unlink()
    (folder / "bpe.vocab").unlink()
    _write_am_mvn(folder / "am.mvn")
    _write_configuration(folder, {"bpemodel": "bpe.model"})
    _save_seeded_checkpoint(folder, seed)
    return folder


def build_tiny_paraformer(folder: Path, seed: int = 0) -> Path:
    """Paraformer layout: config.yaml, tokens.json (a character list), am.mvn, model.pt."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(PARAFORMER_YAML)
    tokens = ["<blank>", "<s>", "</s>"] + [chr(0x4E00 + i) for i in range(60)] + ["<unk>"]
    (folder / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False))
    _write_am_mvn(folder / "am.mvn")
    _write_configuration(folder, {"token_list": "tokens.json"})
    _save_seeded_checkpoint(folder, seed)
    return folder


def break_checkpoint(folder: Path, key_part: str = "encoder.") -> str:
    """Drop one parameter whose name contains `key_part` from model.pt; returns its name."""
    path = folder / "model.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    removed = next(k for k in state if key_part in k and k.endswith(".weight"))
    del state[removed]
    torch.save(state, path)
    return removed


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """16 kHz float32 noise bursts with an envelope: enough energy for non-empty features."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 16_000)
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, seconds * 2 * np.pi * 3, n))
    return (rng.normal(0, 0.1, n) * envelope).astype(np.float32)
