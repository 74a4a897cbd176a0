"""Reference benchmark: faster-whisper (CTranslate2) on the inputs `tubesum bench transcription` uses.

For the side-by-side in the benchmark section of tubesum's README: it measures faster-whisper's
speed (times real time) and word error rate on the same 16 kHz mono WAV files, with the same model
(tiny.en, int8) and the same threads and workers, and prints the same markdown table.

    tubesum bench transcription --keep-audio DIR    # writes the stand-in's speech as DIR/*.wav with DIR/*.txt
    scripts/reference/setup.sh && .venv-reference/bin/python scripts/reference/faster_whisper_bench.py --workers 2 DIR/*.wav

Each file X.wav's reference text, if any, is X.txt beside it. Decoding is greedy (beam 1) by
default, as tubesum's whisper.cpp decodes with beam 0 or 1; language is English, and
condition_on_previous_text and the temperature fallback are faster-whisper's defaults. The model is
loaded (and run once on a second of silence per worker) before anything is timed; each file's time
and the whole set's are wall-clock time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import ctranslate2
import faster_whisper
import numpy as np
from faster_whisper import WhisperModel

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16_000

# Rust's char::is_whitespace (the Unicode White_Space property). Python's str.isspace also counts
# U+001C..U+001F, so whitespace is matched against this set instead.
WHITESPACE = "\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000" + "".join(map(chr, range(0x2000, 0x200B)))
WORD_SEPARATORS = frozenset(WHITESPACE + "-—")


@dataclass(frozen=True)
class Wer:
    """Words of the reference text, and the word edits that turn the transcript into it."""

    errors: int
    words: int

    def percent(self) -> float:
        if self.errors == 0:
            return 0.0
        if self.words == 0:
            return 100.0
        return 100.0 * self.errors / self.words

    def __add__(self, other: Wer) -> Wer:
        return Wer(self.errors + other.errors, self.words + other.words)


@dataclass(frozen=True)
class Measured:
    name: str
    audio_secs: float
    elapsed: float
    wer: Wer | None
    text: str


def words(text: str) -> list[str]:
    """tubesum's normalization: lower case, split at whitespace and hyphens/dashes, keep letters,
    digits and apostrophes, trim apostrophes. (str.isalnum matches Rust's is_alphanumeric except
    for a few combining marks Unicode counts as alphabetic; none occur in English text.)"""
    split, word = [], []
    for c in text.lower():
        if c in WORD_SEPARATORS:
            split.append("".join(word))
            word = []
        else:
            word.append(c)
    split.append("".join(word))
    kept = ("".join(c for c in w if c.isalnum() or c == "'").strip("'") for w in split)
    return [w for w in kept if w]


def levenshtein(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def wer(reference: str, hypothesis: str) -> Wer:
    ref = words(reference)
    return Wer(levenshtein(ref, words(hypothesis)), len(ref))


def is_non_speech(text: str) -> bool:
    """tubesum's filter for segments such as "", "[BLANK_AUDIO]", "(music playing)", "♪ ♪"."""
    rest = text.strip(WHITESPACE)
    while True:
        rest = rest.lstrip(WHITESPACE + "♪♫♬-.…")
        if not rest:
            return True
        close = {"[": "]", "(": ")", "*": "*"}.get(rest[0])
        if close is None:
            return False
        end = rest[1:].find(close)
        if end < 0:
            return False
        rest = rest[end + 2 :]


def joined_text(segments) -> str:
    """The segments' texts, each stripped, joined with single spaces; as tubesum does, segments that
    are empty or only a non-speech annotation are left out."""
    texts = (segment.text.strip(WHITESPACE) for segment in segments)
    return " ".join(text for text in texts if not is_non_speech(text))


def audio_seconds(path: Path) -> float:
    try:
        with wave.open(str(path)) as wav:
            return wav.getnframes() / wav.getframerate()
    except (wave.Error, EOFError):
        # Not a WAV file: decode it as faster-whisper will (16 kHz mono).
        return len(faster_whisper.decode_audio(str(path), sampling_rate=SAMPLE_RATE)) / SAMPLE_RATE


def default_model_dir() -> str:
    try:
        found = subprocess.run(
            [str(REPO / "scripts" / "ct2-model-dir")], cwd=REPO, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit(f"no --model given, and scripts/ct2-model-dir failed (run scripts/setup.sh first): {e}")
    return found.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="16 kHz mono WAV files; X.txt is X.wav's reference text")
    parser.add_argument("--model", help="CTranslate2 Whisper model dir (default: scripts/ct2-model-dir, tiny.en)")
    parser.add_argument("--compute-type", default="int8", help="CTranslate2 quantization (default: int8)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per file (default: 1)")
    parser.add_argument("--workers", type=int, default=1, help="files transcribed at once (default: 1)")
    parser.add_argument("--beam-size", type=int, default=1, help="beam size; 1 is greedy, as tubesum (default: 1)")
    parser.add_argument("--vad", action="store_true", help="turn on faster-whisper's vad_filter (default: off)")
    parser.add_argument("--text", action="store_true", help="also print what was heard in each file")
    args = parser.parse_args()
    for name in ("threads", "workers", "beam_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")

    model_dir = args.model or default_model_dir()
    samples = []
    for path in args.files:
        if not path.is_file():
            sys.exit(f"{path} is not a file")
        reference_path = path.with_suffix(".txt")
        reference = reference_path.read_text(encoding="utf-8") if reference_path.is_file() else None
        samples.append((path, audio_seconds(path), reference))

    model = WhisperModel(
        model_dir, device="cpu", compute_type=args.compute_type, cpu_threads=args.threads, num_workers=args.workers
    )
    options = dict(language="en", beam_size=args.beam_size, vad_filter=args.vad)

    def transcribe(audio) -> str:
        segments, _info = model.transcribe(audio, **options)
        return joined_text(segments)  # the segments are decoded as they are read

    def measure(sample) -> Measured:
        path, audio_secs, reference = sample
        started = time.perf_counter()
        text = transcribe(str(path))
        elapsed = time.perf_counter() - started
        return Measured(path.name, audio_secs, elapsed, None if reference is None else wer(reference, text), text)

    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
        list(pool.map(lambda _: transcribe(silence), range(args.workers)))
        started = time.perf_counter()
        files = list(pool.map(measure, samples))
        wall = time.perf_counter() - started

    threads = "1 thread" if args.threads == 1 else f"{args.threads} threads"
    vad = ", VAD" if args.vad else ""
    plural = "" if args.workers == 1 else "s"
    print(
        f"engine: faster-whisper {faster_whisper.__version__} (CTranslate2 {ctranslate2.__version__}), {model_dir}, "
        f"{args.compute_type}, {threads} per file, beam {args.beam_size}{vad}; {args.workers} worker{plural} at once"
    )
    print("| file | audio | time | speed | WER |")
    print("|---|---|---|---|---|")

    def wer_cell(w: Wer | None) -> str:
        return "— (no reference text)" if w is None else f"{w.percent():.1f} % ({w.errors} of {w.words} words)"

    for f in files:
        speed = f.audio_secs / f.elapsed
        print(f"| {f.name} | {f.audio_secs:.1f} s | {f.elapsed:.2f} s | {speed:.1f}× real time | {wer_cell(f.wer)} |")
    audio = sum(f.audio_secs for f in files)
    scored = [f.wer for f in files if f.wer is not None]
    total = sum(scored[1:], scored[0]) if scored else None
    print(f"| all | {audio:.1f} s | {wall:.2f} s | {audio / wall:.1f}× real time | {wer_cell(total)} |")
    if args.text:
        for f in files:
            print(f"\n{f.name}: {f.text}")


if __name__ == "__main__":
    main()
