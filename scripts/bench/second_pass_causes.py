"""Where a default-mode run's Whisper inputs go: the first pass, and the second pass by cause.

For each recording of vs_faster_whisper.py (built into --work as that script builds them), the
CLI runs in this process (default mode, --no-itn) with counters around the pipeline's own calls:

    first pass        packed inputs that hold speech (batching.run_chunks)
    sparse            a sparse input's utterances, two at a time, replacing its text
    rest              the rest of an input after its text ended early (written_until, tail)
    skipped           a stretch of speech the text skipped, run alone (text kept / dropped)
    follow-up         the rest of a rerun that itself ended early

and, apart (no encoder pass, so not in "all"): "in place", the decodes that went on over an
input's own encoder output: an early end resumed (whisper_decode.resumed; not for Chinese), or a
Mandarin decode sent back to an utterance its text skipped (whisper_decode.sought).

With --no-second-pass it also runs each recording without the second pass, to show what its
inputs buy. Error rates are vs_faster_whisper's (WER; CER for Mandarin).

    .venv/bin/python scripts/bench/second_pass_causes.py --only long_zh,mixed_en --no-second-pass
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

import vs_faster_whisper as bench  # noqa: E402
from webui.modules import batching, second_pass, windows  # noqa: E402
from webui.modules.engines import whisper_decode  # noqa: E402


def counted_run(audio: Path, with_second_pass: bool) -> tuple[collections.Counter, str]:
    """One CLI run in process; the inputs by cause and the text."""
    counts: collections.Counter = collections.Counter()
    run_chunks, plan, follow_up, keeps = batching.run_chunks, second_pass.plan, second_pass.follow_up, second_pass.keeps
    continued = whisper_decode._continued

    def counting_run_chunks(engine, chunks, language, tally, cancel, retry_tail=0.0, *args, **kwargs):
        counts["first pass"] += sum(1 for c in chunks if c.spans)
        return run_chunks(engine, chunks, language, tally, cancel, retry_tail if with_second_pass else 0.0,
                          *args, **kwargs)

    def counting_plan(*args, **kwargs):
        redo = plan(*args, **kwargs)
        for r in redo:
            counts["sparse" if r.replaces else "skipped" if r.checked else "rest"] += 1
        return redo

    def counting_follow_up(*args, **kwargs):
        redo = follow_up(*args, **kwargs)
        counts["follow-up"] += len(redo)
        return redo

    def counting_keeps(redo, piece, out):
        kept = keeps(redo, piece, out)
        if redo.checked and kept:
            counts["skipped, text kept"] += 1
        return kept

    def counting_continued(*args, **kwargs):  # one call per decode in place
        counts["in place"] += 1
        return continued(*args, **kwargs)

    windows.run_chunks, second_pass.plan = counting_run_chunks, counting_plan
    second_pass.follow_up, second_pass.keeps = counting_follow_up, counting_keeps
    whisper_decode._continued = counting_continued
    try:
        from webui import cli

        with tempfile.TemporaryDirectory() as folder:
            argv = ["transcribe", str(audio), "--format", "json", "--out", folder, "--no-itn", "--quiet",
                    "--no-resume", "--device", "cpu"]
            with contextlib.redirect_stdout(io.StringIO()):  # the CLI names the file it wrote
                failed = cli.main(argv)
            if failed:
                raise SystemExit(f"the CLI failed on {audio}")
            text = json.loads((Path(folder) / f"{audio.stem}.json").read_text())["text"]
    finally:
        windows.run_chunks, second_pass.plan = run_chunks, plan
        second_pass.follow_up, second_pass.keeps = follow_up, keeps
        whisper_decode._continued = continued
    return counts, text


CAUSES = ("first pass", "sparse", "rest", "skipped", "follow-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="asterisk,asterisk_es,mixed_en,long_zh,dialog_zh")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lfbench"))
    parser.add_argument("--no-second-pass", action="store_true", help="also run each without the second pass")
    for name, value in (("--asterisk-minutes", 18.7), ("--long-minutes", 20.0), ("--mixed-minutes", 20.0),
                        ("--dialog-minutes", 15.0)):
        parser.add_argument(name, type=float, default=value)
    args = parser.parse_args()
    from webui.offline import enforce_offline

    enforce_offline()
    head = f"{'recording':12} {'run':16} " + " ".join(f"{c:>10}" for c in CAUSES) \
        + f" {'all':>5} {'skipped kept':>12} {'in place':>9} {'WER/CER':>8}"
    print(head + "\n" + "-" * len(head))
    for name in [n for n in args.only.split(",") if n]:
        audio, reference = bench.build(name, args.work, args)
        for with_second_pass in (True, False) if args.no_second_pass else (True,):
            counts, text = counted_run(audio, with_second_pass)
            error = bench.error_rate(reference, text, bench.language_of(name))
            kept = f"{counts['skipped, text kept']}/{counts['skipped']}"
            print(f"{name:12} {'default' if with_second_pass else 'no second pass':16} "
                  + " ".join(f"{counts[c]:10d}" for c in CAUSES)
                  + f" {sum(counts[c] for c in CAUSES):5d} {kept:>12} {counts['in place']:9d} {error:8.2%}", flush=True)


if __name__ == "__main__":
    main()
