//! Ask a channel: the passages of its videos that best answer a question (the search index, any
//! of the question's words, best first, within a token budget), and — with an LLM configured —
//! an answer written from them that cites passages by number, which tubesum turns into moment
//! links. The model never writes a timestamp or a URL; offline the passages are the answer.

use std::sync::Arc;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::export::timestamp;
use crate::domain::ChannelId;
use crate::domain::search::{SearchHit, SearchQuery};
use crate::ports::{JobStore, PortError};
use crate::stages::StageError;
use crate::stages::settings::LlmSettings;
use crate::stages::summarization::chunk::estimate_tokens;
use crate::stages::summarization::llm::{chat, openai_client};
use crate::stages::summarization::textrank::is_stop_word;

/// The most passages an answer draws on.
pub const MAX_PASSAGES: usize = 8;
/// The most tokens of passages sent with a question.
pub const PASSAGE_BUDGET_TOKENS: usize = 1500;

const PROMPT: &str = "You answer a question about a YouTube channel using only the numbered passages from its \
videos. Cite the passages you use by their number in square brackets, like [2]. Do not write timestamps, times, \
links or URLs: the numbers are enough. If the passages do not answer the question, say so in one sentence. \
Answer in at most 4 sentences.";

/// An answer: the passages (numbered from 1 in `passages` order), and with an LLM its text and
/// the passages it cites.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Answer {
    pub question: String,
    /// `llm:<model>`, or `passages` (no LLM configured: the passages are the answer).
    pub answered_by: String,
    /// The model's answer as it wrote it, citing passages as `[n]`; absent offline.
    pub answer: Option<String>,
    /// The same with each valid citation a Markdown link to its moment (`[n](https://…&t=…s)`);
    /// citations of passages that do not exist are removed.
    pub answer_markdown: Option<String>,
    /// The passages the answer cites, by number, each once, in the order first cited.
    pub citations: Vec<Citation>,
    /// The passages found, best first (`n` = position + 1).
    pub passages: Vec<SearchHit>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Citation {
    pub n: usize,
    #[serde(flatten)]
    pub passage: SearchHit,
}

/// Why a question could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    #[error(transparent)]
    Store(#[from] PortError),
    #[error("the LLM: {0}")]
    Llm(StageError),
}

/// The LLM that writes answers, when one is configured.
#[derive(Clone)]
pub struct Asker {
    client: Arc<Client<OpenAIConfig>>,
    model: String,
    temperature: f32,
    /// The most tokens one request sends (`llm.max_chunk_tokens`).
    budget: usize,
}

impl Asker {
    /// `llm:<model>`.
    pub fn name(&self) -> String {
        format!("llm:{}", self.model)
    }

    /// The most tokens one request of a map-reduce sends (`llm.max_chunk_tokens`).
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// One exchange with the model.
    pub async fn chat(&self, system: &str, user: String) -> Result<String, StageError> {
        chat(&self.client, &self.model, self.temperature, system, user).await
    }

    pub fn from_settings(llm: &LlmSettings) -> Option<Asker> {
        llm.enabled().then(|| Asker {
            client: Arc::new(openai_client(&llm.base_url, llm.api_key.as_ref(), llm.timeout_secs)),
            model: llm.model.clone(),
            temperature: llm.temperature,
            budget: llm.max_chunk_tokens,
        })
    }
}

/// Answers `question` from `channel`'s passages.
pub async fn ask(
    store: &dyn JobStore,
    asker: Option<&Asker>,
    channel: &ChannelId,
    question: &str,
) -> Result<Answer, AskError> {
    let words: Vec<String> = question
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.to_lowercase().replace('\'', ""))
        .filter(|w| w.len() > 1 && !is_stop_word(w))
        .collect();
    // Nothing to look for ("the of and", "?"): nothing found.
    let found = if words.is_empty() {
        Vec::new()
    } else {
        let query = SearchQuery {
            text: words.join(" "),
            channel: Some(channel.clone()),
            limit: 4 * MAX_PASSAGES as u32,
            any: true,
        };
        store.search(&query).await?
    };
    let mut passages: Vec<SearchHit> = Vec::new();
    let mut tokens = 0;
    for hit in found.into_iter().map(SearchHit::from) {
        // One passage per moment (a key point repeats its transcript segment).
        if passages.iter().any(|p| p.video_id == hit.video_id && (p.start - hit.start).abs() < 1.0) {
            continue;
        }
        let cost = estimate_tokens(&hit.snippet) + 16;
        if passages.len() == MAX_PASSAGES || tokens + cost > PASSAGE_BUDGET_TOKENS {
            break;
        }
        tokens += cost;
        passages.push(hit);
    }
    let Some(asker) = asker.filter(|_| !passages.is_empty()) else {
        let answered_by = "passages".to_owned();
        return Ok(Answer {
            question: question.to_owned(),
            answered_by,
            answer: None,
            answer_markdown: None,
            citations: Vec::new(),
            passages,
        });
    };
    let mut user = format!("Question: {}\n\nPassages:\n", question.trim());
    for (i, p) in passages.iter().enumerate() {
        user.push_str(&format!("[{}] ({}, at {}) {}\n", i + 1, p.title, timestamp(p.start), p.snippet));
    }
    let text = asker.chat(PROMPT, user).await.map_err(AskError::Llm)?;
    let (markdown, cited) = link_citations(&text, &passages);
    let citations = cited.into_iter().map(|n| Citation { n, passage: passages[n - 1].clone() }).collect();
    Ok(Answer {
        question: question.to_owned(),
        answered_by: asker.name(),
        answer: Some(text),
        answer_markdown: Some(markdown),
        citations,
        passages,
    })
}

/// The answer with each `[n]` (also `[n, m]`) of an existing passage a link to its moment, the
/// others removed; and the passages cited, each once, in order.
fn link_citations(text: &str, passages: &[SearchHit]) -> (String, Vec<usize>) {
    static CITATION: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\[(\d+(?:\s*,\s*\d+)*)\]").expect("regex"));
    let mut cited = Vec::new();
    let linked = CITATION.replace_all(text, |caps: &regex::Captures<'_>| {
        let mut links = Vec::new();
        for n in caps[1].split(',').filter_map(|n| n.trim().parse::<usize>().ok()) {
            let Some(passage) = n.checked_sub(1).and_then(|i| passages.get(i)) else { continue };
            if !cited.contains(&n) {
                cited.push(n);
            }
            links.push(format!("[{n}]({})", passage.url));
        }
        links.join("")
    });
    (linked.into_owned(), cited)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::VideoId;
    use crate::domain::search::PassageKind;

    fn hit(start: f64) -> SearchHit {
        let video_id = VideoId::parse("aaaaaaaaaaa").unwrap();
        SearchHit {
            url: crate::domain::moment_url(&video_id, start),
            video_id,
            channel_id: ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap(),
            title: "T".into(),
            kind: PassageKind::Transcript,
            start,
            snippet: "s".into(),
            snippet_html: "s".into(),
            rank: 1.0,
        }
    }

    #[test]
    fn citations_become_moment_links_and_made_up_ones_go() {
        let passages = [hit(3.0), hit(75.5)];
        let (md, cited) = link_citations("In autumn [2]. Also [1, 2] and [7].", &passages);
        assert_eq!(
            md,
            "In autumn [2](https://www.youtube.com/watch?v=aaaaaaaaaaa&t=75s). Also \
             [1](https://www.youtube.com/watch?v=aaaaaaaaaaa&t=3s)[2](https://www.youtube.com/watch?v=aaaaaaaaaaa&t=75s) and ."
        );
        assert_eq!(cited, [2, 1]);
    }
}
