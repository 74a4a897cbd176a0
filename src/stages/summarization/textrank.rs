//! Offline extractive summary: TextRank over TF-IDF sentence similarity.
//!
//! 1. **Units.** The transcript's words are split into sentences across segment boundaries; a
//!    unit starts at the `start` of the segment holding its first word. A "sentence" longer
//!    than 60 words — all of a transcript without punctuation, such as YouTube's automatic
//!    captions — is cut into windows of about 25 words (20–40, cut at segment boundaries when
//!    possible).
//! 2. **Graph.** Each unit is a TF-IDF vector (lowercased, stop words and fillers removed, a
//!    light plural stem), L2-normalised; edge weights are cosine similarities, no self-loops.
//! 3. **Rank.** Weighted PageRank, damping 0.85, until the L1 change is below 1e-6 or after 100
//!    iterations; dangling units spread their rank evenly.
//! 4. **Pick.** Units by descending rank, ties broken by position; a unit is skipped when it is
//!    a near-duplicate (cosine ≥ 0.8, or the same text) of one already picked, and units
//!    without content words are only used when no unit has any. The summary presents its
//!    units in transcript order; key points are ordered by time. The summary takes at most a
//!    third of the units and the key points at most half, whatever larger limits are asked.
//!
//! **Scale.** The similarity graph is never built: with unit vectors `X`, the graph is
//! `W = X·Xᵀ − diag`, so one PageRank step is `W·y = X·(Xᵀ·y) − diag·y`, which costs
//! O(total terms) instead of O(n²) time and memory. A 10 000-sentence transcript therefore
//! keeps sentence-sized units and needs no cap or merging; the remaining costs are sorting
//! (O(n log n)) and the near-duplicate checks (O(n × picks)).

use std::collections::HashMap;

use crate::domain::Segment;

/// An extractive summary of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Extractive {
    /// The top-ranked units in transcript order, joined with spaces.
    pub summary: String,
    /// The top-ranked distinct units, ordered by time.
    pub key_points: Vec<KeyPointCandidate>,
}

/// A ranked unit of the transcript and when it is said.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyPointCandidate {
    pub text: String,
    /// Seconds: the start of the segment where the unit begins.
    pub start: f64,
}

const DAMPING: f64 = 0.85;
const TOLERANCE: f64 = 1e-6;
const MAX_ITERATIONS: usize = 100;
/// Sentences longer than this are cut into windows.
const MAX_SENTENCE_WORDS: usize = 60;
/// A window may end at a segment boundary once it holds this many words…
const WINDOW_MIN_WORDS: usize = 20;
/// …and must end here.
const WINDOW_MAX_WORDS: usize = 40;
/// A trailing window shorter than this joins the previous one.
const WINDOW_TAIL_WORDS: usize = 10;
const NEAR_DUPLICATE: f64 = 0.8;
/// Row sums below this count as "no edges" (dangling).
const EDGELESS: f64 = 1e-9;

/// Summarises a transcript; `None` when it holds no words at all.
///
/// `max_summary_sentences` and `max_key_points` are upper bounds: fewer are returned when the
/// transcript has fewer distinct units. Deterministic for a given input.
pub fn summarize(segments: &[Segment], max_summary_sentences: usize, max_key_points: usize) -> Option<Extractive> {
    let units = split_units(segments);
    if units.is_empty() {
        return None;
    }
    let vectors = tfidf_vectors(&units);
    let scores = pagerank(&vectors);
    let ranked = rank_order(&scores);
    // A summary is shorter than what it summarizes: at most a third of the units (key points at
    // most half), whatever the limits allow.
    let max_summary_sentences = max_summary_sentences.min(units.len().div_ceil(3));
    let max_key_points = max_key_points.min(units.len().div_ceil(2));

    let mut summary_ids = pick_distinct(&ranked, &units, &vectors, max_summary_sentences);
    summary_ids.sort_unstable();
    let summary = summary_ids.iter().map(|&i| units[i].text.as_str()).collect::<Vec<_>>().join(" ");

    let mut key_ids = pick_distinct(&ranked, &units, &vectors, max_key_points);
    key_ids.sort_by(|&a, &b| units[a].start.total_cmp(&units[b].start).then(a.cmp(&b)));
    let key_points =
        key_ids.into_iter().map(|i| KeyPointCandidate { text: units[i].text.clone(), start: units[i].start }).collect();

    Some(Extractive { summary, key_points })
}

/// A sentence or window of the transcript.
#[derive(Debug)]
struct Unit {
    text: String,
    start: f64,
}

struct Word<'a> {
    text: &'a str,
    segment: usize,
}

fn split_units(segments: &[Segment]) -> Vec<Unit> {
    let words: Vec<Word<'_>> = segments
        .iter()
        .enumerate()
        .flat_map(|(segment, s)| s.text.split_whitespace().map(move |text| Word { text, segment }))
        .collect();

    let mut units = Vec::new();
    let mut sentence_start = 0;
    for (i, word) in words.iter().enumerate() {
        let last = i + 1 == words.len();
        if last || ends_sentence(word.text) {
            let sentence = &words[sentence_start..=i];
            if sentence.len() > MAX_SENTENCE_WORDS {
                for window in windows(sentence) {
                    units.push(make_unit(window, segments));
                }
            } else {
                units.push(make_unit(sentence, segments));
            }
            sentence_start = i + 1;
        }
    }
    units
}

fn make_unit(words: &[Word<'_>], segments: &[Segment]) -> Unit {
    let text = words.iter().map(|w| w.text).collect::<Vec<_>>().join(" ");
    let start = words.first().and_then(|w| segments.get(w.segment)).map_or(0.0, |s| s.start);
    Unit { text, start }
}

/// Cuts a long run of words into windows of `WINDOW_MIN_WORDS..=WINDOW_MAX_WORDS` words,
/// preferring segment boundaries; a short tail joins the previous window.
fn windows<'w, 'a>(words: &'w [Word<'a>]) -> Vec<&'w [Word<'a>]> {
    let mut cuts = vec![0];
    let mut from = 0;
    for i in 1..words.len() {
        let len = i - from;
        let at_boundary = words[i].segment != words[i - 1].segment;
        if len >= WINDOW_MAX_WORDS || (len >= WINDOW_MIN_WORDS && at_boundary) {
            cuts.push(i);
            from = i;
        }
    }
    if cuts.len() > 1 && words.len() - from < WINDOW_TAIL_WORDS {
        cuts.pop();
    }
    cuts.push(words.len());
    cuts.windows(2).map(|c| &words[c[0]..c[1]]).collect()
}

/// Abbreviations whose final period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "mt", "inc", "ltd", "co", "corp", "fig", "approx", "dept",
    "est", "no", "vol",
];

fn ends_sentence(word: &str) -> bool {
    let trimmed = word.trim_end_matches(['"', '\'', '”', '’', ')', ']', '»']);
    if trimmed.ends_with(['!', '?', '…']) {
        return true;
    }
    let Some(stem) = trimmed.strip_suffix('.') else {
        return false;
    };
    if stem.ends_with('.') {
        return true; // "..." ellipsis
    }
    let stem = stem.trim_start_matches(['"', '\'', '“', '‘', '(', '[', '«']);
    let lower = stem.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return false;
    }
    // Initials and dotted abbreviations: "J.", "U.S.", "e.g.", "i.e.".
    let dotted = !stem.is_empty()
        && stem.split('.').all(|part| part.chars().count() == 1 && part.chars().all(char::is_alphabetic));
    !dotted
}

/// Sorted `(term, weight)` pairs with unit L2 norm; empty when the unit has no content words.
type SparseVector = Vec<(usize, f64)>;

fn tfidf_vectors(units: &[Unit]) -> Vec<SparseVector> {
    let mut vocabulary: HashMap<String, usize> = HashMap::new();
    let counts: Vec<Vec<(usize, usize)>> = units
        .iter()
        .map(|unit| {
            let mut terms: Vec<usize> = terms(&unit.text)
                .map(|term| {
                    let next_id = vocabulary.len();
                    *vocabulary.entry(term).or_insert(next_id)
                })
                .collect();
            terms.sort_unstable();
            let mut counted: Vec<(usize, usize)> = Vec::new();
            for term in terms {
                match counted.last_mut() {
                    Some((last, count)) if *last == term => *count += 1,
                    Some(_) | None => counted.push((term, 1)),
                }
            }
            counted
        })
        .collect();

    let mut document_frequency = vec![0usize; vocabulary.len()];
    for unit in &counts {
        for &(term, _) in unit {
            document_frequency[term] += 1;
        }
    }
    let n = units.len() as f64;
    counts
        .into_iter()
        .map(|unit| {
            let mut vector: SparseVector = unit
                .into_iter()
                .map(|(term, count)| {
                    let tf = 1.0 + (count as f64).ln();
                    let idf = ((1.0 + n) / (1.0 + document_frequency[term] as f64)).ln() + 1.0;
                    (term, tf * idf)
                })
                .collect();
            let norm = vector.iter().map(|(_, w)| w * w).sum::<f64>().sqrt();
            if norm > 0.0 {
                vector.iter_mut().for_each(|(_, w)| *w /= norm);
            }
            vector
        })
        .collect()
}

/// Lowercased content terms: stop words dropped, possessives and simple plurals stemmed.
fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '’')).filter_map(|raw| {
        let lower = raw.to_lowercase().replace('’', "'");
        let lower = lower.trim_matches('\'');
        let lower = lower.strip_suffix("'s").unwrap_or(lower);
        let token: String = lower.chars().filter(|c| *c != '\'').collect();
        if token.chars().count() < 2 || is_stop_word(&token) {
            return None;
        }
        let stemmed = stem(token);
        (!is_stop_word(&stemmed)).then_some(stemmed)
    })
}

fn stem(token: String) -> String {
    if token.len() > 4 && token.ends_with("ies") {
        return format!("{}y", &token[..token.len() - 3]);
    }
    let plural = token.len() > 3
        && token.ends_with('s')
        && !token.ends_with("ss")
        && !token.ends_with("us")
        && !token.ends_with("is");
    if plural { token[..token.len() - 1].to_owned() } else { token }
}

/// A compact English stop-word list plus spoken fillers (apostrophes removed: "dont").
#[rustfmt::skip]
const STOP_WORDS: &[&str] = &[
    "about", "above", "actually", "after", "again", "against", "all", "also", "am", "an", "and",
    "any", "are", "aren", "arent", "as", "at", "basically", "be", "because", "been", "before",
    "being", "below", "between", "both", "but", "by", "can", "cant", "could", "couldnt", "did",
    "didnt", "do", "does", "doesnt", "doing", "don", "dont", "down", "during", "each", "else",
    "even", "ever", "every", "few", "for", "from", "further", "get", "gets", "getting", "go",
    "goes", "going", "gonna", "got", "gotta", "had", "hadnt", "has", "hasnt", "have", "havent",
    "having", "he", "hed", "hell", "her", "here", "heres", "hers", "herself", "hes", "hey", "him",
    "himself", "his", "how", "hows", "id", "if", "ill", "im", "in", "into", "is", "isnt", "it",
    "itll", "its", "itself", "ive", "just", "kind", "kinda", "know", "let", "lets", "like",
    "literally", "lot", "lots", "maybe", "me", "might", "mm", "more", "most", "much", "must",
    "mustnt", "my", "myself", "no", "nor", "not", "now", "of", "off", "oh", "ok", "okay", "on",
    "once", "one", "only", "or", "other", "ought", "our", "ours", "ourselves", "out", "over", "own",
    "pretty", "really", "right", "said", "same", "say", "says", "see", "shall", "she", "shed",
    "shell", "shes", "should", "shouldnt", "so", "some", "something", "sort", "still", "such",
    "sure", "than", "that", "thatll", "thats", "the", "their", "theirs", "them", "themselves",
    "then", "there", "theres", "these", "they", "theyd", "theyll", "theyre", "theyve", "thing",
    "things", "think", "this", "those", "through", "to", "too", "uh", "um", "under", "until", "up",
    "us", "very", "wanna", "was", "wasnt", "way", "we", "wed", "well", "were", "werent", "weve",
    "what", "whats", "when", "whens", "where", "wheres", "which", "while", "who", "whom", "whos",
    "why", "whys", "will", "with", "won", "wont", "would", "wouldnt", "yeah", "yes", "yet", "you",
    "youd", "youll", "your", "youre", "yours", "yourself", "yourselves", "youve",
];

/// Whether `token` (lower case, no apostrophes) is a word too common to say what a text is about.
pub fn is_stop_word(token: &str) -> bool {
    STOP_WORDS.binary_search(&token).is_ok()
}

fn dot(a: &[(usize, f64)], b: &[(usize, f64)]) -> f64 {
    let (mut i, mut j, mut sum) = (0, 0, 0.0);
    while let (Some(&(ta, wa)), Some(&(tb, wb))) = (a.get(i), b.get(j)) {
        match ta.cmp(&tb) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                sum += wa * wb;
                i += 1;
                j += 1;
            }
        }
    }
    sum
}

fn dense_dot(sparse: &[(usize, f64)], dense: &[f64]) -> f64 {
    sparse.iter().map(|&(term, w)| w * dense[term]).sum()
}

/// Weighted PageRank on the implicit cosine graph `W = X·Xᵀ − diag` (see the module docs).
fn pagerank(vectors: &[SparseVector]) -> Vec<f64> {
    let n = vectors.len();
    let vocabulary = vectors.iter().flat_map(|v| v.iter().map(|&(term, _)| term + 1)).max().unwrap_or(0);
    let self_similarity: Vec<f64> = vectors.iter().map(|v| dot(v, v)).collect();

    let mut total = vec![0.0; vocabulary];
    for vector in vectors {
        for &(term, w) in vector {
            total[term] += w;
        }
    }
    let row_sums: Vec<f64> =
        vectors.iter().zip(&self_similarity).map(|(v, own)| (dense_dot(v, &total) - own).max(0.0)).collect();

    let uniform = 1.0 / n as f64;
    let mut rank = vec![uniform; n];
    let mut aggregate = vec![0.0; vocabulary];
    for _ in 0..MAX_ITERATIONS {
        aggregate.iter_mut().for_each(|a| *a = 0.0);
        let mut dangling = 0.0;
        let mut outflow = vec![0.0; n];
        for (i, vector) in vectors.iter().enumerate() {
            if row_sums[i] > EDGELESS {
                outflow[i] = rank[i] / row_sums[i];
                for &(term, w) in vector {
                    aggregate[term] += w * outflow[i];
                }
            } else {
                dangling += rank[i];
            }
        }
        let base = (1.0 - DAMPING) * uniform + DAMPING * dangling * uniform;
        let mut change = 0.0;
        for (i, vector) in vectors.iter().enumerate() {
            let inflow = (dense_dot(vector, &aggregate) - self_similarity[i] * outflow[i]).max(0.0);
            let next = base + DAMPING * inflow;
            change += (next - rank[i]).abs();
            rank[i] = next;
        }
        if change < TOLERANCE {
            break;
        }
    }
    rank
}

/// Unit indices by descending score; scores equal to 1e-12 count as ties, broken by position.
fn rank_order(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<(i64, usize)> =
        scores.iter().enumerate().map(|(i, score)| ((score * 1e12).round() as i64, i)).collect();
    order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, i)| i).collect()
}

/// Up to `limit` units in rank order, skipping near-duplicates of those already picked.
fn pick_distinct(ranked: &[usize], units: &[Unit], vectors: &[SparseVector], limit: usize) -> Vec<usize> {
    let any_content = vectors.iter().any(|v| !v.is_empty());
    let mut picked: Vec<usize> = Vec::with_capacity(limit);
    for &candidate in ranked {
        if picked.len() >= limit {
            break;
        }
        if any_content && vectors[candidate].is_empty() {
            continue;
        }
        let duplicate = picked.iter().any(|&p| {
            dot(&vectors[candidate], &vectors[p]) >= NEAR_DUPLICATE
                || units[candidate].text.to_lowercase() == units[p].text.to_lowercase()
        });
        if !duplicate {
            picked.push(candidate);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start: f64, text: &str) -> Segment {
        Segment { start, end: start + 1.0, text: text.into() }
    }

    fn texts(extractive: &Extractive) -> Vec<&str> {
        extractive.key_points.iter().map(|k| k.text.as_str()).collect()
    }

    #[test]
    fn stop_words_are_sorted_for_binary_search() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop_word("dont") && is_stop_word("the") && !is_stop_word("rust"));
    }

    #[test]
    fn no_text_gives_none() {
        assert_eq!(summarize(&[], 3, 3), None);
        assert_eq!(summarize(&[seg(0.0, "  "), seg(1.0, "")], 3, 3), None);
    }

    #[test]
    fn one_sentence_is_its_own_summary() {
        let result = summarize(&[seg(4.0, "Rust is fast.")], 3, 5).unwrap();
        assert_eq!(result.summary, "Rust is fast.");
        assert_eq!(result.key_points, vec![KeyPointCandidate { text: "Rust is fast.".into(), start: 4.0 }]);
    }

    #[test]
    fn only_stop_words_still_summarizes_by_position() {
        let result = summarize(&[seg(0.0, "Yeah. Okay so. Um.")], 1, 2).unwrap();
        assert_eq!(result.summary, "Yeah.");
        assert_eq!(texts(&result), ["Yeah.", "Okay so."]);
    }

    #[test]
    fn identical_sentences_collapse_to_one() {
        let segments: Vec<_> = (0..20).map(|i| seg(i as f64, "The cat sat on the mat.")).collect();
        let result = summarize(&segments, 3, 5).unwrap();
        assert_eq!(result.summary, "The cat sat on the mat.");
        assert_eq!(result.key_points.len(), 1);
        assert_eq!(result.key_points[0].start, 0.0, "ties go to the earliest");
    }

    #[test]
    fn sentences_span_segments_and_start_where_they_begin() {
        let segments = [
            seg(0.0, "Databases store data. Indexes make"),
            seg(5.0, "database queries fast. Mr. Smith"),
            seg(9.0, "builds indexes for databases!"),
        ];
        let units = split_units(&segments);
        let got: Vec<_> = units.iter().map(|u| (u.text.as_str(), u.start)).collect();
        assert_eq!(
            got,
            [
                ("Databases store data.", 0.0),
                ("Indexes make database queries fast.", 0.0),
                ("Mr. Smith builds indexes for databases!", 5.0),
            ]
        );
    }

    #[test]
    fn sentence_ends_skip_abbreviations_and_decimals() {
        for not_end in ["Dr.", "e.g.", "U.S.", "J.", "(i.e.", "3.5", "word", "vs."] {
            assert!(!ends_sentence(not_end), "{not_end}");
        }
        for end in ["end.", "end!", "why?", "so...", "wait…", "said.\"", "(this.)", "USA."] {
            assert!(ends_sentence(end), "{end}");
        }
    }

    #[test]
    fn unpunctuated_transcripts_fall_back_to_windows() {
        // 120 words over 24 auto-caption segments of 5 words, no punctuation at all.
        let segments: Vec<_> = (0..24)
            .map(|i| {
                let words: Vec<String> = (0..5).map(|w| format!("word{}", i * 5 + w)).collect();
                seg(i as f64 * 2.0, &words.join(" "))
            })
            .collect();
        let units = split_units(&segments);
        let lens: Vec<_> = units.iter().map(|u| u.text.split_whitespace().count()).collect();
        assert_eq!(lens, [20, 20, 20, 20, 20, 20]);
        assert_eq!(units[1].start, 8.0, "windows start on their first segment");
        assert_eq!(units[1].text.split(' ').next(), Some("word20"));
    }

    #[test]
    fn windows_cut_long_segments_and_absorb_short_tails() {
        let long: Vec<String> = (0..85).map(|w| format!("w{w}")).collect();
        let units = split_units(&[seg(0.0, &long.join(" "))]);
        let lens: Vec<_> = units.iter().map(|u| u.text.split_whitespace().count()).collect();
        assert_eq!(lens, [40, 45], "a 5-word tail joins the previous window");
        let words: Vec<String> = units.iter().flat_map(|u| u.text.split(' ').map(str::to_owned)).collect();
        assert_eq!(words, long, "no word is lost");
    }

    #[test]
    fn terms_drop_stop_words_and_stem() {
        let got: Vec<_> = terms("The Models' batteries don't last; it's Rust's class & bus").collect();
        assert_eq!(got, ["model", "battery", "last", "rust", "class", "bus"]);
    }

    #[test]
    fn central_sentences_win_and_keep_transcript_order() {
        let segments = [
            seg(0.0, "Welcome to the show everybody."),
            seg(3.0, "Solar panels convert sunlight into electricity."),
            seg(6.0, "My cat likes tuna."),
            seg(9.0, "Modern solar panels convert more sunlight than older panels."),
            seg(12.0, "Electricity from solar panels is getting cheaper."),
            seg(15.0, "Thanks for watching."),
        ];
        let result = summarize(&segments, 2, 3).unwrap();
        for off_topic in ["tuna", "Welcome", "Thanks"] {
            assert!(!result.summary.contains(off_topic), "{}", result.summary);
        }
        // Both picks are about solar panels and appear in transcript order.
        let positions: Vec<usize> = segments.iter().filter_map(|s| result.summary.find(s.text.as_str())).collect();
        assert_eq!(positions.len(), 2, "{}", result.summary);
        assert!(positions[0] < positions[1], "{}", result.summary);
        let starts: Vec<_> = result.key_points.iter().map(|k| k.start).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]), "{starts:?}");
        assert_eq!(result.key_points.len(), 3);
    }

    #[test]
    fn near_duplicates_are_not_picked_twice() {
        let segments = [
            seg(0.0, "Kubernetes schedules containers onto nodes."),
            seg(2.0, "Kubernetes schedules containers onto nodes!"),
            seg(4.0, "Kubernetes schedules the containers onto the nodes."),
            seg(6.0, "Containers need memory limits on nodes."),
            seg(8.0, "Kubernetes restarts failed containers."),
        ];
        let result = summarize(&segments, 5, 5).unwrap();
        let scheduling = texts(&result).iter().filter(|t| t.contains("schedules")).count();
        assert_eq!(scheduling, 1, "{:?}", result.key_points);
        assert_eq!(result.key_points.len(), 3);
    }

    #[test]
    fn limits_are_respected_including_zero() {
        let segments = [seg(0.0, "Alpha beta gamma."), seg(1.0, "Delta epsilon zeta."), seg(2.0, "Eta theta iota.")];
        let result = summarize(&segments, 0, 0).unwrap();
        assert_eq!(result.summary, "");
        assert!(result.key_points.is_empty());
        // Generous limits are capped: a summary is at most a third of the units, key points half.
        let result = summarize(&segments, 10, 10).unwrap();
        assert_eq!(result.key_points.len(), 2);
        assert_eq!(result.summary.matches('.').count(), 1);
    }

    #[test]
    fn pagerank_is_a_distribution_and_symmetric_nodes_tie() {
        let units: Vec<Unit> = ["apple banana.", "apple banana.", "cherry date.", "apple cherry."]
            .iter()
            .map(|t| Unit { text: (*t).into(), start: 0.0 })
            .collect();
        let scores = pagerank(&tfidf_vectors(&units));
        assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{scores:?}");
        assert_eq!(scores[0], scores[1]);
        assert!(scores.iter().all(|s| *s > 0.0));
    }

    #[test]
    fn factorised_pagerank_matches_the_explicit_graph() {
        let texts = [
            "rust borrow checker ownership.",
            "ownership rules rust memory.",
            "memory safety without garbage collection.",
            "garbage collection pauses.",
            "unrelated cooking recipe.",
            "rust memory safety.",
        ];
        let units: Vec<Unit> = texts.iter().map(|t| Unit { text: (*t).into(), start: 0.0 }).collect();
        let vectors = tfidf_vectors(&units);
        let n = vectors.len();
        // Textbook weighted PageRank over an explicit matrix.
        let w: Vec<Vec<f64>> = (0..n)
            .map(|i| (0..n).map(|j| if i == j { 0.0 } else { dot(&vectors[i], &vectors[j]) }).collect())
            .collect();
        let sums: Vec<f64> = w.iter().map(|row| row.iter().sum()).collect();
        let mut rank = vec![1.0 / n as f64; n];
        for _ in 0..200 {
            let dangling: f64 = (0..n).filter(|&j| sums[j] <= EDGELESS).map(|j| rank[j]).sum();
            rank = (0..n)
                .map(|i| {
                    let inflow: f64 = (0..n).filter(|&j| sums[j] > EDGELESS).map(|j| w[j][i] / sums[j] * rank[j]).sum();
                    (1.0 - DAMPING) / n as f64 + DAMPING * (inflow + dangling / n as f64)
                })
                .collect();
        }
        let fast = pagerank(&vectors);
        for (a, b) in fast.iter().zip(&rank) {
            assert!((a - b).abs() < 1e-5, "{fast:?} vs {rank:?}");
        }
    }

    #[test]
    fn deterministic_across_runs() {
        let segments: Vec<_> =
            (0..50).map(|i| seg(i as f64, &format!("Topic {} relates to topic {}.", i % 7, i % 3))).collect();
        assert_eq!(summarize(&segments, 4, 6), summarize(&segments, 4, 6));
    }

    #[test]
    fn ten_thousand_sentences_stay_fast() {
        let vocabulary = "network latency cache server client protocol packet router bandwidth \
            throughput queue socket kernel thread memory disk";
        let vocabulary: Vec<&str> = vocabulary.split_whitespace().collect();
        let mut state: u64 = 42;
        let mut next = move || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as usize
        };
        let segments: Vec<_> = (0..10_000)
            .map(|i| {
                let words: Vec<&str> = (0..8).map(|_| vocabulary[next() % vocabulary.len()]).collect();
                seg(i as f64 * 3.0, &format!("The {}.", words.join(" ")))
            })
            .collect();
        let started = std::time::Instant::now();
        let result = summarize(&segments, 5, 8).unwrap();
        let elapsed = started.elapsed();
        assert_eq!(result.key_points.len(), 8);
        assert!(result.key_points.windows(2).all(|w| w[0].start <= w[1].start), "{:?}", result.key_points);
        // Generous: unoptimised builds on a loaded CI machine.
        assert!(elapsed.as_secs() < 20, "took {elapsed:?}");
    }
}
