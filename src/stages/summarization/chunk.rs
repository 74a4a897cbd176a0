//! Token-budget chunking of a transcript for LLM map-reduce.
//!
//! [`chunk_segments`] packs whole segments, in order, into chunks whose estimated size stays
//! within a token budget. Each segment becomes one line of the chunk text, prefixed with its
//! index — `[12] text of segment twelve` — so a model can cite the segment a point comes from
//! (and the caller can map `[12]` back to `segments[12].start`).
//!
//! Guarantees:
//! - every segment's words appear exactly once, in order: nothing is truncated or dropped
//!   (whitespace inside a segment is normalised to single spaces, which keeps one segment per
//!   line; an empty segment still gets its `[i]` line);
//! - chunks break between segments, and their ranges cover `0..segments.len()` in order;
//! - `estimate_tokens(&chunk.text) <= budget` unless one segment alone is over budget: that
//!   segment is split between words into several chunks, each `i..i + 1` and each carrying the
//!   `[i]` marker. Only a single word (with its marker) larger than the budget can still exceed
//!   it, alone in its chunk.

use std::ops::Range;

use crate::domain::Segment;

/// A run of consecutive segments (or a piece of one long segment) and its prompt text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The segments this chunk covers; `i..i + 1` for every piece of a split segment.
    pub segments: Range<usize>,
    /// One `[index] text` line per segment, joined with `\n`.
    pub text: String,
}

/// Estimates how many LLM tokens `text` costs, without a tokenizer.
///
/// `max(⌈chars / 4⌉, ⌈words × 4 / 3⌉)`: English BPE tokenizers average about four characters
/// or three quarters of a word per token; taking the larger of the two stays on the safe side
/// for short-word and for long-word text alike. It is an estimate: keep a margin below the
/// model's real context limit.
pub fn estimate_tokens(text: &str) -> usize {
    estimate_from_counts(text.chars().count(), text.split_whitespace().count())
}

fn estimate_from_counts(chars: usize, words: usize) -> usize {
    chars.div_ceil(4).max((words * 4).div_ceil(3))
}

/// Splits `segments` into chunks of at most `budget_tokens` estimated tokens (see the module
/// docs for the exact guarantees). A budget of zero is treated as one.
pub fn chunk_segments(segments: &[Segment], budget_tokens: usize) -> Vec<Chunk> {
    let budget = budget_tokens.max(1);
    let mut chunks = Vec::new();
    let mut current: Option<ChunkBuilder> = None;
    for (index, segment) in segments.iter().enumerate() {
        let words: Vec<&str> = segment.text.split_whitespace().collect();
        let line = Line::new(index, &words);
        if line.tokens() > budget {
            chunks.extend(current.take().map(ChunkBuilder::finish));
            split_segment(index, &words, budget, &mut chunks);
            continue;
        }
        match current.as_mut() {
            Some(builder) if builder.tokens_with(&line) <= budget => builder.push(line),
            Some(_) | None => {
                chunks.extend(current.take().map(ChunkBuilder::finish));
                current = Some(ChunkBuilder::new(line));
            }
        }
    }
    chunks.extend(current.map(ChunkBuilder::finish));
    chunks
}

/// One `[index] words…` line with its counts.
struct Line {
    index: usize,
    text: String,
    chars: usize,
    words: usize,
}

impl Line {
    fn new(index: usize, words: &[&str]) -> Self {
        let mut text = marker(index);
        for word in words {
            text.push(' ');
            text.push_str(word);
        }
        Line { index, chars: text.chars().count(), words: words.len() + 1, text }
    }

    fn tokens(&self) -> usize {
        estimate_from_counts(self.chars, self.words)
    }
}

fn marker(index: usize) -> String {
    format!("[{index}]")
}

/// Accumulates lines; counts are kept so the estimate of the joined text is exact and O(1).
struct ChunkBuilder {
    range: Range<usize>,
    text: String,
    chars: usize,
    words: usize,
}

impl ChunkBuilder {
    fn new(line: Line) -> Self {
        ChunkBuilder { range: line.index..line.index + 1, text: line.text, chars: line.chars, words: line.words }
    }

    /// Lines are joined by `\n`: one more character, no extra word.
    fn tokens_with(&self, line: &Line) -> usize {
        estimate_from_counts(self.chars + 1 + line.chars, self.words + line.words)
    }

    fn push(&mut self, line: Line) {
        self.text.push('\n');
        self.text.push_str(&line.text);
        self.chars += 1 + line.chars;
        self.words += line.words;
        self.range.end = line.index + 1;
    }

    fn finish(self) -> Chunk {
        Chunk { segments: self.range, text: self.text }
    }
}

/// Packs an over-budget segment's words greedily into `[index] …` pieces; every piece holds at
/// least one word, so this always progresses.
fn split_segment(index: usize, words: &[&str], budget: usize, chunks: &mut Vec<Chunk>) {
    let head = marker(index);
    let head_chars = head.chars().count();
    let mut text = head.clone();
    let (mut chars, mut count) = (head_chars, 0usize);
    for word in words {
        let word_chars = word.chars().count();
        let fits = estimate_from_counts(chars + 1 + word_chars, count + 2) <= budget;
        if count > 0 && !fits {
            chunks.push(Chunk { segments: index..index + 1, text: std::mem::replace(&mut text, head.clone()) });
            (chars, count) = (head_chars, 0);
        }
        text.push(' ');
        text.push_str(word);
        chars += 1 + word_chars;
        count += 1;
    }
    chunks.push(Chunk { segments: index..index + 1, text });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(text: &str) -> Segment {
        Segment { start: 0.0, end: 1.0, text: text.into() }
    }

    /// Reads the chunks back into each segment's words, checking markers on the way.
    fn reassemble(chunks: &[Chunk], count: usize) -> Vec<Vec<String>> {
        let mut words = vec![Vec::new(); count];
        for chunk in chunks {
            for line in chunk.text.split('\n') {
                let mut tokens = line.split(' ');
                let index: usize = tokens
                    .next()
                    .and_then(|m| m.strip_prefix('['))
                    .and_then(|m| m.strip_suffix(']'))
                    .and_then(|m| m.parse().ok())
                    .unwrap_or_else(|| panic!("line without marker: {line:?}"));
                assert!(chunk.segments.contains(&index), "{index} outside {chunk:?}");
                words[index].extend(tokens.map(str::to_owned));
            }
        }
        words
    }

    fn assert_invariants(segments: &[Segment], budget: usize) -> Vec<Chunk> {
        let chunks = chunk_segments(segments, budget);
        let line_tokens: Vec<usize> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| Line::new(i, &s.text.split_whitespace().collect::<Vec<_>>()).tokens())
            .collect();
        // Ranges cover 0..n in order; only split segments repeat.
        let mut next = 0;
        for chunk in &chunks {
            assert!(!chunk.segments.is_empty(), "{chunk:?}");
            let repeats = chunk.segments.start + 1 == next && chunk.segments.len() == 1;
            assert!(chunk.segments.start == next || repeats, "gap before {chunk:?}");
            next = chunk.segments.end;
            let single_segment_over_budget =
                chunk.segments.len() == 1 && line_tokens[chunk.segments.start] > budget.max(1);
            if !single_segment_over_budget {
                assert!(estimate_tokens(&chunk.text) <= budget.max(1), "{chunk:?}");
            }
            if single_segment_over_budget && estimate_tokens(&chunk.text) > budget.max(1) {
                // Only a lone word (or a bare marker) may exceed the budget.
                assert!(chunk.text.split_whitespace().count() <= 2, "{chunk:?}");
            }
        }
        assert_eq!(next, segments.len());
        let expected: Vec<Vec<String>> =
            segments.iter().map(|s| s.text.split_whitespace().map(str::to_owned).collect()).collect();
        assert_eq!(reassemble(&chunks, segments.len()), expected);
        chunks
    }

    #[test]
    fn estimate_tokens_takes_the_larger_heuristic() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 2); // one word: ⌈4/3⌉
        assert_eq!(estimate_tokens("abcdefghijklmnop"), 4); // 16 chars
        assert_eq!(estimate_tokens("a b c"), 4); // 3 words
        assert_eq!(estimate_tokens(&"x".repeat(401)), 101);
        assert_eq!(estimate_tokens("héllo wörld"), 3); // chars, not bytes
    }

    #[test]
    fn no_segments_no_chunks() {
        assert!(chunk_segments(&[], 100).is_empty());
    }

    #[test]
    fn everything_fits_in_one_chunk() {
        let segments = [seg("hello world"), seg("  second\n segment "), seg("")];
        let chunks = assert_invariants(&segments, 1000);
        assert_eq!(chunks, vec![Chunk { segments: 0..3, text: "[0] hello world\n[1] second segment\n[2]".into() }]);
    }

    #[test]
    fn breaks_between_segments_at_the_budget() {
        // Each line "[i] aaaa bbbb cccc" is 18 chars, 4 words → 6 tokens; two lines → 11 tokens.
        let segments: Vec<_> = (0..5).map(|_| seg("aaaa bbbb cccc")).collect();
        let chunks = assert_invariants(&segments, 11);
        let ranges: Vec<_> = chunks.iter().map(|c| c.segments.clone()).collect();
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks[0].text, "[0] aaaa bbbb cccc\n[1] aaaa bbbb cccc");
    }

    #[test]
    fn oversized_segment_is_split_on_words() {
        let long = (0..40).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ");
        let segments = [seg("before"), seg(&long), seg("after")];
        let chunks = assert_invariants(&segments, 12);
        assert_eq!(chunks.first().map(|c| c.segments.clone()), Some(0..1));
        assert_eq!(chunks.last().map(|c| c.segments.clone()), Some(2..3));
        let pieces: Vec<_> = chunks.iter().filter(|c| c.segments == (1..2)).collect();
        assert!(pieces.len() > 3, "{pieces:?}");
        assert!(pieces.iter().all(|c| c.text.starts_with("[1] ")));
        assert!(pieces.iter().all(|c| estimate_tokens(&c.text) <= 12));
    }

    #[test]
    fn a_word_longer_than_the_budget_stands_alone() {
        let segments = [seg(&format!("a {} b", "x".repeat(100)))];
        let chunks = assert_invariants(&segments, 5);
        let texts: Vec<_> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts[0], "[0] a");
        assert_eq!(texts[1], format!("[0] {}", "x".repeat(100)));
        assert_eq!(texts[2], "[0] b");
    }

    #[test]
    fn zero_budget_still_makes_progress() {
        let segments = [seg("one two"), seg(""), seg("three")];
        let chunks = assert_invariants(&segments, 0);
        assert_eq!(chunks.len(), 4);
    }

    #[test]
    fn marker_like_text_inside_a_segment_is_kept() {
        let segments = [seg("[7] not a marker"), seg("x")];
        let chunks = assert_invariants(&segments, 100);
        assert_eq!(chunks[0].text, "[0] [7] not a marker\n[1] x");
    }

    #[test]
    fn invariants_hold_for_many_shapes() {
        // Deterministic pseudo-random transcripts (xorshift), across budgets.
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move |bound: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % bound
        };
        for _ in 0..12 {
            let segments: Vec<Segment> = (0..next(60))
                .map(|_| {
                    let words: Vec<String> =
                        (0..next(50)).map(|_| "abcdefghijkl"[..1 + next(12) as usize].to_owned()).collect();
                    seg(&words.join(if next(5) == 0 { "\n " } else { " " }))
                })
                .collect();
            for budget in [0, 1, 3, 8, 20, 64, 500, 100_000] {
                assert_invariants(&segments, budget);
            }
        }
    }
}
