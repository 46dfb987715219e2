"""OpenAI-compatible audio API: POST /v1/audio/transcriptions and GET /v1/models.

One module per concern: keys (who a token is), upload (the streamed multipart body), request
(the options asked for), responses (the formats), routes (the endpoints), errors.

What OpenAI's clients send is accepted: multipart `file`, `model`, `language`, `prompt`,
`response_format` (json, text, srt, vtt, verbose_json), `temperature` and
`timestamp_granularities[]`, with a Bearer API key. Differences, by design:

* `model`: one of this server's models (GET /v1/models), or an OpenAI name (whisper-1,
  gpt-4o-transcribe, ...) which means the server's default model; anything else is a 400.
* `prompt` is used as hotwords (biasing words), not as preceding context. `keywords[]` (newer
  clients) is added to them. `temperature` is accepted and ignored (decoding is deterministic).
* `language`: an ISO code or `auto`; zh-CN, zh-TW and zh-HK mean Chinese written in that script.
  The extra field `script` (zh, zh-TW, zh-HK, keep) chooses the Chinese script explicitly and wins.
* verbose_json: segments are the transcript's subtitle lines with their real times. tokens,
  temperature, avg_logprob, compression_ratio and no_speech_prob are the model's (Whisper: those
  of the decode the line came from, tokens the line's own; see transcript.Scores), left out where
  the engine does not report them (FunASR models) or, for tokens, cannot attribute them; never a
  made-up constant. `seek` is left out: inputs are VAD-packed speech decoded in batches, not a
  window sought through the file. Words (`timestamp_granularities[]=word`) are the model's own
  (Whisper's alignment, before ITN); a line without word times (an engine that gives none) shares
  its time out over its words, each marked `"interpolated": true`, and `word_timestamps` says
  "model", "interpolated" or "mixed".
* `response_format=diarized_json` (OpenAI's diarizing shape: segments with `speaker`), or
  `diarize=true` / `num_speakers` / `min_speakers` / `max_speakers` with any format, labels the
  speakers (verbose_json segments then carry `speaker`). `accurate=true` picks the accurate mode.
  `known_speaker_names[]` / `known_speaker_references[]` are not supported yet (ignored).
* `stream=true` is refused (400).

The upload is streamed to a file under the upload folder in chunks (never read whole into
memory), with the server's max_upload_mb enforced as it arrives (413). The job goes through the
same queue as the page and shows in History, owned by the API key's user. The handler waits for
it asynchronously (no worker thread held), and a client that disconnects cancels its job.
Errors have OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations
from __future__ import annotations

from .errors import OpenAIError, unauthorized
from .keys import API_USER, ApiKey, ApiKeys, parse_api_keys
from .request import GRANULARITIES, OPENAI_MODELS, RESPONSE_FORMATS, Asked, read_options
from .responses import LANGUAGE_NAMES, diarized_json, respond, verbose_json, verbose_segment, words_of
from .routes import router, wait_for
from .upload import Form, read_form, safe_name

__all__ = [
    "API_USER", "ApiKey", "ApiKeys", "Asked", "Form", "GRANULARITIES", "LANGUAGE_NAMES", "OPENAI_MODELS", "OpenAIError",
    "RESPONSE_FORMATS", "parse_api_keys", "read_form", "read_options", "respond", "router", "safe_name", "unauthorized",
    "diarized_json", "verbose_json", "verbose_segment", "wait_for", "words_of",
]
