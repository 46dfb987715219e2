"""Engines for tests that need no model: they answer in ways that make mistakes visible."""

from webui.modules.batching import run_chunks
from webui.modules.engines.base import EngineOutput, LocalText


def drive(*args, **kwargs):
    """Run the batch runner (batching.run_chunks) to the end; returns its outputs."""
    steps = run_chunks(*args, **kwargs)
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


class EchoEngine:
    """Answers each input with its own length, so misplaced results are visible."""

    name = "echo"
    device = "cpu"
    max_input_seconds = 30.0

    def __init__(self, cap=2):
        self.cap, self.batches, self.released = cap, [], 0

    def batch_limit(self, padded_seconds):
        return self.cap

    def transcribe_batch(self, audios, language="auto"):
        self.batches.append([a.size for a in audios])
        return [EngineOutput((LocalText(0.0, a.size / 16000, f"len={a.size}"),), "en") for a in audios]

    def release(self):
        self.released += 1

    def unload(self):
        pass
