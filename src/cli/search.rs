//! `tubesum search QUERY`: the search index of the configured job store, from the command line.

use std::io::IsTerminal;

use anyhow::Context;

use crate::app::export::timestamp;
use crate::app::{Settings, Wiring};
use crate::domain::ChannelId;
use crate::domain::search::SearchHit;

/// Reindexes (when asked), then prints the hits of `query`, best first.
pub async fn run(
    settings: Settings,
    query: Option<&str>,
    channel: Option<ChannelId>,
    limit: u32,
    reindex: bool,
) -> anyhow::Result<()> {
    let wiring = Wiring::from_settings(settings).await?;
    let (store, artifacts) = (wiring.deps.store.as_ref(), wiring.deps.artifacts.as_ref());
    if reindex {
        let done = crate::app::search::reindex(store, artifacts).await.context("reindexing")?;
        eprintln!("reindexed {} videos ({} transcripts, {} summaries)", done.videos, done.transcripts, done.summaries);
    }
    let Some(query) = query else { return Ok(()) };
    let hits = crate::app::search::search(store, query, channel, limit).await.context("searching")?;
    if hits.is_empty() {
        println!("no passage matches {query:?}");
    }
    let bold = std::io::stdout().is_terminal();
    for hit in &hits {
        println!("{}", line(hit, bold));
    }
    Ok(())
}

/// `[mm:ss] title (video id, kind)`, the snippet (matches in bold on a terminal, else in «»), the
/// moment's link.
fn line(hit: &SearchHit, bold: bool) -> String {
    let (on, off) = if bold { ("\u{1b}[1m", "\u{1b}[0m") } else { ("«", "»") };
    let snippet = hit.snippet_html.replace("<mark>", on).replace("</mark>", off);
    let snippet = snippet.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&");
    format!(
        "[{}] {} ({}, {})\n    {}\n    {}",
        timestamp(hit.start),
        hit.title,
        hit.video_id,
        hit.kind,
        snippet,
        hit.url
    )
}
