"""English ITN against a table of real sentences, and its effect on WER (issue 20, item 4).

1. The table tests/data/itn_sentences.tsv (`raw<TAB>expected<TAB>source`, one header line, no
   quoting): how many sentences come out exactly as expected from ITN before (webui/modules/itn.py
   as committed at HEAD, or --before FILE) and after (the working tree's module).
2. WER on real English speech (default ../shared/testdata/real_en/manifest.jsonl): the bundled
   model's raw text (`webui.cli transcribe --no-itn`, or the JSONs already in --raw-dir), then the
   same pieces through each ITN as merge.assemble does (piece by piece, joined with join_texts).
   The measure is the issue's: the final text against the manifest's reference as written, both
   put through the normaliser of tests/test_wer.py (lower case, punctuation to spaces). Writing
   "ten" as "10" is counted as an error wherever the reference spells it, on the raw text as on
   the ITN text, so ITN scores no worse than the raw text exactly when it changes no word that
   the reference has as said ("first" → "1st", "meters" → "m" are errors; "1 2 3" left as the
   model wrote it is the same error in both).

    .venv/bin/python scripts/bench/itn_table.py
    .venv/bin/python scripts/bench/itn_table.py --raw-dir /tmp/itn_raw --show
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TABLE = ROOT / "tests" / "data" / "itn_sentences.tsv"
MANIFEST = ROOT.parent / "shared" / "testdata" / "real_en" / "manifest.jsonl"


def read_table(path: Path = TABLE) -> list[tuple[str, str, str]]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if n == 0 or not line.strip():
            continue  # header
        raw, expected, source = line.split("\t")
        rows.append((raw, expected, source))
    return rows


def load_before(path: str | None):
    """The ITN module as committed (or from a file), loaded beside the package's own."""
    if path:
        code = Path(path).read_text(encoding="utf-8")
    else:
        code = subprocess.run(["git", "show", "HEAD:webui/modules/itn.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
    import webui.modules

    name = "webui.modules._itn_before"
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "webui.modules"
    module.__file__ = str(ROOT / "webui" / "modules" / "_itn_before.py")
    sys.modules[name] = module
    exec(compile(code, module.__file__, "exec"), module.__dict__)
    assert webui.modules  # the package is imported first, for the module's relative imports
    return module


def table_score(itn_module, rows) -> tuple[int, list[tuple[str, str, str]]]:
    outs = itn_module.normalize_segments([r[0] for r in rows], "en").texts
    wrong = [(raw, expected, got) for (raw, expected, _), got in zip(rows, outs) if got != expected]
    return len(rows) - len(wrong), wrong


def normalise(text: str) -> str:
    """tests/test_wer.py's: lower case, punctuation to spaces."""
    text = re.sub(r"[^\w\s']", " ", text.lower())
    return " ".join(text.split())


def raw_transcripts(manifest: Path, raw_dir: Path | None) -> dict[str, dict]:
    entries = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
    if raw_dir is None:
        raw_dir = Path(tempfile.mkdtemp(prefix="itn_raw_"))
        files = [str(manifest.parent / e["audio"]) for e in entries]
        print(f"transcribing {len(files)} clips with the bundled model into {raw_dir} …", flush=True)
        subprocess.run([sys.executable, "-m", "webui.cli", "transcribe", *files, "--format", "json",
                        "--no-itn", "--quiet", "--out", str(raw_dir)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    out = {}
    for e in entries:
        data = json.loads((raw_dir / (Path(e["audio"]).stem + ".json")).read_text(encoding="utf-8"))
        out[e["audio"]] = {"ref": e["text"], "language": data.get("language") or "en",
                           "pieces": [s["text"] for s in data["segments"]], "text": data["text"]}
    return out


def wer_rows(clips: dict[str, dict], modules: dict) -> dict[str, tuple[float, int, list]]:
    import jiwer

    from webui.modules.transcript import join_texts

    refs = [normalise(c["ref"]) for c in clips.values()]
    result = {}
    for label, module in modules.items():
        hyps, changed = [], []
        for name, c in clips.items():
            text = c["text"] if module is None else join_texts(
                module.normalize_segments(c["pieces"], c["language"]).texts)
            if module is not None and text != c["text"]:
                changed.append((name, c["text"], text))
            hyps.append(normalise(text))
        result[label] = (jiwer.wer(refs, hyps), sum(len(r.split()) for r in refs), changed)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--manifest", type=Path, default=MANIFEST,
                        help="real English clips with exact transcripts (manifest.jsonl)")
    parser.add_argument("--raw-dir", type=Path,
                        help="JSONs of `webui.cli transcribe --no-itn --format json` on the manifest's "
                             "clips (default: transcribe them now)")
    parser.add_argument("--before", help="the old itn.py (default: git show HEAD:webui/modules/itn.py)")
    parser.add_argument("--no-wer", action="store_true")
    parser.add_argument("--show", action="store_true", help="print the sentences that come out wrong")
    args = parser.parse_args(argv)

    from webui.modules import itn as after

    before = load_before(args.before)
    rows = read_table(args.table)
    right_before, wrong_before = table_score(before, rows)
    right_after, wrong_after = table_score(after, rows)
    real = sum(1 for r in rows if r[2].startswith("whisper-base"))
    print(f"table {args.table.relative_to(ROOT) if args.table.is_relative_to(ROOT) else args.table}: "
          f"{len(rows)} sentences ({real} the bundled model's output on real recordings)")
    print(f"  right before: {right_before}/{len(rows)}")
    print(f"  right after:  {right_after}/{len(rows)}")
    if args.show:
        for label, wrong in (("before", wrong_before), ("after", wrong_after)):
            print(f"  wrong {label}:")
            for raw, expected, got in wrong:
                print(f"    {raw!r}\n      expected {expected!r}\n      got      {got!r}")
    if args.no_wer:
        return 0
    if not args.manifest.is_file():
        print(f"no WER: {args.manifest} not found")
        return 0
    clips = raw_transcripts(args.manifest, args.raw_dir)
    scores = wer_rows(clips, {"raw": None, "ITN before": before, "ITN after": after})
    words = scores["raw"][1]
    print(f"WER on {args.manifest.parent} ({len(clips)} clips, {words} reference words; "
          f"tests/test_wer.py's normaliser):")
    for label, (wer, _, changed) in scores.items():
        print(f"  {label:<11} {wer:.2%}")
        for name, old, new in changed:
            print(f"      {name}: {old!r} -> {new!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
