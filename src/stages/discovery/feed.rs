//! YouTube channel Atom feed parsing (discovery). The stand-in's writer
//! (`youtube_standin::feed::render_feed`) is a separate implementation the tests round-trip
//! through.
//!
//! The feed lives at `https://www.youtube.com/feeds/videos.xml?channel_id=…` and lists a
//! channel's most recent uploads. [`parse_feed`] reads it with a real XML parser (quick-xml):
//! elements are matched by *local name* and by their position in the tree, so it does not
//! depend on which prefixes a document binds:
//!
//! ```text
//! feed/title                           → Feed::channel_title
//! feed/yt:channelId                    → Feed::channel_id
//! feed/entry/yt:videoId                → FeedEntry::video_id (fallback: feed/entry/id = "yt:video:ID")
//! feed/entry/title                     → FeedEntry::title
//! feed/entry/published                 → FeedEntry::published_at (RFC 3339)
//! feed/entry/media:group/media:description → FeedEntry::description
//! ```
//!
//! Choices, made on purpose:
//! - An entry with neither `yt:videoId` nor a `yt:video:` id is **skipped**: one odd entry
//!   must not hide a channel's other videos. Malformed XML, an unknown entity or a root other
//!   than `feed` is an error.
//! - A missing entry title reads as an empty string; an empty or blank description as `None`;
//!   a `published` that is not RFC 3339 as `None`.
//! - Identifiers and timestamps are trimmed; titles and descriptions are kept verbatim
//!   (line ends normalised to `\n`, as XML requires).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use quick_xml::Reader;
use quick_xml::escape::resolve_xml_entity;
use quick_xml::events::{BytesRef, Event};

/// A parsed channel feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Feed {
    pub channel_id: Option<String>,
    pub channel_title: Option<String>,
    /// Entries in document order (YouTube lists newest first).
    pub entries: Vec<FeedEntry>,
}

/// One video of a channel feed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeedEntry {
    pub video_id: String,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// Why a feed could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("malformed feed xml at byte {position}")]
    Xml {
        position: u64,
        #[source]
        source: quick_xml::Error,
    },
    #[error("malformed feed xml: {0}")]
    Malformed(&'static str),
    #[error("unknown entity `&{0};` in feed")]
    UnknownEntity(String),
    #[error("document root is `{0}`, not an atom feed")]
    NotAFeed(String),
}

/// Parses a YouTube channel Atom feed. See the module docs for what is read and what is lenient.
pub fn parse_feed(xml: &str) -> Result<Feed, FeedError> {
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let mut reader = Reader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;

    let mut parser = FeedParser::default();
    loop {
        let event =
            reader.read_event().map_err(|source| FeedError::Xml { position: reader.error_position(), source })?;
        let xml_err = |source: quick_xml::Error| FeedError::Xml { position: reader.buffer_position(), source };
        match event {
            Event::Start(start) => parser.open(start.local_name().into_inner())?,
            Event::Empty(start) => {
                parser.open(start.local_name().into_inner())?;
                parser.close();
            }
            Event::End(_) => parser.close(),
            Event::Text(text) => {
                let text = text.xml10_content().map_err(|e| xml_err(e.into()))?;
                parser.text.push_str(&text);
            }
            Event::CData(cdata) => {
                let text = cdata.xml10_content().map_err(|e| xml_err(e.into()))?;
                parser.text.push_str(&text);
            }
            Event::GeneralRef(entity) => {
                let resolved = resolve_reference(&entity).map_err(|e| match e {
                    RefError::Xml(source) => xml_err(source),
                    RefError::Unknown(name) => FeedError::UnknownEntity(name),
                })?;
                parser.text.push_str(&resolved);
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
            Event::Eof => break,
        }
    }
    parser.finish()
}

enum RefError {
    Xml(quick_xml::Error),
    Unknown(String),
}

fn resolve_reference(entity: &BytesRef<'_>) -> Result<Cow<'static, str>, RefError> {
    if let Some(ch) = entity.resolve_char_ref().map_err(RefError::Xml)? {
        return Ok(Cow::Owned(ch.to_string()));
    }
    let name = entity.decode().map_err(|e| RefError::Xml(quick_xml::Error::from(e)))?;
    resolve_xml_entity(&name).map(Cow::Borrowed).ok_or_else(|| RefError::Unknown(name.into_owned()))
}

/// The elements the parser cares about, by local name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Feed,
    Entry,
    Group,
    Title,
    VideoId,
    ChannelId,
    Id,
    Published,
    Description,
    Other,
}

impl Node {
    fn from_local_name(name: &[u8]) -> Self {
        match name {
            b"feed" => Self::Feed,
            b"entry" => Self::Entry,
            b"group" => Self::Group,
            b"title" => Self::Title,
            b"videoId" => Self::VideoId,
            b"channelId" => Self::ChannelId,
            b"id" => Self::Id,
            b"published" => Self::Published,
            b"description" => Self::Description,
            _ => Self::Other,
        }
    }
}

#[derive(Default)]
struct EntryDraft {
    video_id: Option<String>,
    atom_id: Option<String>,
    title: Option<String>,
    published: Option<String>,
    description: Option<String>,
}

impl EntryDraft {
    /// `None` when the entry carries no usable video id (it is then skipped).
    fn build(self) -> Option<FeedEntry> {
        let video_id = self
            .video_id
            .filter(|id| !id.is_empty())
            .or_else(|| self.atom_id.and_then(|id| id.strip_prefix("yt:video:").map(str::to_owned)))
            .filter(|id| !id.is_empty())?;
        Some(FeedEntry {
            video_id,
            title: self.title.unwrap_or_default(),
            published_at: self.published.as_deref().and_then(parse_timestamp),
            description: self.description.filter(|d| !d.trim().is_empty()),
        })
    }
}

fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value).ok().map(|t| t.with_timezone(&Utc))
}

#[derive(Default)]
struct FeedParser {
    path: Vec<Node>,
    text: String,
    seen_root: bool,
    entry: Option<EntryDraft>,
    feed: Option<Feed>,
}

impl FeedParser {
    fn open(&mut self, local_name: &[u8]) -> Result<(), FeedError> {
        let node = Node::from_local_name(local_name);
        if self.path.is_empty() {
            if self.seen_root {
                return Err(FeedError::Malformed("more than one root element"));
            }
            self.seen_root = true;
            if node != Node::Feed {
                return Err(FeedError::NotAFeed(String::from_utf8_lossy(local_name).into_owned()));
            }
            self.feed = Some(Feed { channel_id: None, channel_title: None, entries: Vec::new() });
        }
        self.path.push(node);
        if self.path == [Node::Feed, Node::Entry] {
            self.entry = Some(EntryDraft::default());
        }
        self.text.clear();
        Ok(())
    }

    /// End tags are checked against start tags by quick-xml, so `close` only pops.
    fn close(&mut self) {
        let text = std::mem::take(&mut self.text);
        let entry = &mut self.entry;
        let Some(feed) = self.feed.as_mut() else {
            self.path.pop();
            return;
        };
        match self.path.as_slice() {
            [Node::Feed, Node::Title] => set_once(&mut feed.channel_title, text),
            [Node::Feed, Node::ChannelId] => set_once(&mut feed.channel_id, text.trim().into()),
            [Node::Feed, Node::Entry] => {
                if let Some(built) = entry.take().and_then(EntryDraft::build) {
                    feed.entries.push(built);
                }
            }
            [Node::Feed, Node::Entry, leaf] => {
                if let Some(draft) = entry.as_mut() {
                    match leaf {
                        Node::VideoId => set_once(&mut draft.video_id, text.trim().into()),
                        Node::Id => set_once(&mut draft.atom_id, text.trim().into()),
                        Node::Title => set_once(&mut draft.title, text),
                        Node::Published => set_once(&mut draft.published, text.trim().into()),
                        Node::Feed | Node::Entry | Node::Group | Node::ChannelId | Node::Description | Node::Other => {}
                    }
                }
            }
            [Node::Feed, Node::Entry, Node::Group, Node::Description] => {
                if let Some(draft) = entry.as_mut() {
                    set_once(&mut draft.description, text);
                }
            }
            // Any other path is an element this parser does not read.
            _ => {}
        }
        self.path.pop();
    }

    fn finish(self) -> Result<Feed, FeedError> {
        if !self.path.is_empty() {
            return Err(FeedError::Malformed("document ends inside an element"));
        }
        self.feed.ok_or(FeedError::Malformed("document has no root element"))
    }
}

/// The first occurrence of an element wins.
fn set_once(slot: &mut Option<String>, value: String) {
    if slot.is_none() {
        *slot = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const YOUTUBE_SAMPLE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns:yt="http://www.youtube.com/xml/schemas/2015" xmlns:media="http://search.yahoo.com/mrss/" xmlns="http://www.w3.org/2005/Atom">
 <link rel="self" href="http://www.youtube.com/feeds/videos.xml?channel_id=UCXuqSBlHAE6Xw-yeJA0Tunw"/>
 <id>yt:channel:XuqSBlHAE6Xw-yeJA0Tunw</id>
 <yt:channelId>UCXuqSBlHAE6Xw-yeJA0Tunw</yt:channelId>
 <title>Linus Tech Tips</title>
 <link rel="alternate" href="https://www.youtube.com/channel/UCXuqSBlHAE6Xw-yeJA0Tunw"/>
 <author>
  <name>Linus Tech Tips</name>
  <uri>https://www.youtube.com/channel/UCXuqSBlHAE6Xw-yeJA0Tunw</uri>
 </author>
 <published>2008-11-25T00:46:52+00:00</published>
 <entry>
  <id>yt:video:dQw4w9WgXcQ</id>
  <yt:videoId>dQw4w9WgXcQ</yt:videoId>
  <yt:channelId>UCXuqSBlHAE6Xw-yeJA0Tunw</yt:channelId>
  <title>We Tried It &amp; It Worked &#8211; &quot;Really&quot;</title>
  <link rel="alternate" href="https://www.youtube.com/watch?v=dQw4w9WgXcQ"/>
  <author>
   <name>Linus Tech Tips</name>
   <uri>https://www.youtube.com/channel/UCXuqSBlHAE6Xw-yeJA0Tunw</uri>
  </author>
  <published>2024-05-01T17:00:06+00:00</published>
  <updated>2024-05-02T01:22:03+00:00</updated>
  <media:group>
   <media:title>We Tried It &amp; It Worked</media:title>
   <media:content url="https://www.youtube.com/v/dQw4w9WgXcQ?version=3" type="application/x-shockwave-flash" width="640" height="390"/>
   <media:thumbnail url="https://i3.ytimg.com/vi/dQw4w9WgXcQ/hqdefault.jpg" width="480" height="360"/>
   <media:description>Line one &lt;b&gt;
Line two</media:description>
   <media:community>
    <media:starRating count="1000" average="5.00" min="1" max="5"/>
    <media:statistics views="123456"/>
   </media:community>
  </media:group>
 </entry>
 <entry>
  <id>yt:video:abcdefghijk</id>
  <yt:videoId>abcdefghijk</yt:videoId>
  <yt:channelId>UCXuqSBlHAE6Xw-yeJA0Tunw</yt:channelId>
  <title>Second</title>
  <published>2024-04-30T08:00:00-02:00</published>
  <media:group>
   <media:title>Second</media:title>
   <media:description></media:description>
  </media:group>
 </entry>
</feed>
"#;

    fn entry(id: &str, title: &str, description: Option<&str>) -> FeedEntry {
        FeedEntry {
            video_id: id.into(),
            title: title.into(),
            published_at: Some(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
            description: description.map(str::to_owned),
        }
    }

    #[test]
    fn parses_a_youtube_feed() {
        let feed = parse_feed(YOUTUBE_SAMPLE).unwrap();
        assert_eq!(feed.channel_id.as_deref(), Some("UCXuqSBlHAE6Xw-yeJA0Tunw"));
        assert_eq!(feed.channel_title.as_deref(), Some("Linus Tech Tips"));
        assert_eq!(feed.entries.len(), 2);

        let first = &feed.entries[0];
        assert_eq!(first.video_id, "dQw4w9WgXcQ");
        assert_eq!(first.title, "We Tried It & It Worked \u{2013} \"Really\"");
        assert_eq!(first.published_at, Some(Utc.with_ymd_and_hms(2024, 5, 1, 17, 0, 6).unwrap()));
        assert_eq!(first.description.as_deref(), Some("Line one <b>\nLine two"));

        let second = &feed.entries[1];
        assert_eq!(second.video_id, "abcdefghijk");
        assert_eq!(second.title, "Second");
        assert_eq!(
            second.published_at,
            Some(Utc.with_ymd_and_hms(2024, 4, 30, 10, 0, 0).unwrap()),
            "offsets are converted to utc"
        );
        assert_eq!(second.description, None, "an empty description is none");
    }

    #[test]
    fn entry_level_channel_id_and_media_title_do_not_leak() {
        let xml = r#"<feed><title>Feed</title><entry><yt:videoId>v1</yt:videoId>
            <yt:channelId>OTHER</yt:channelId><media:group><media:title>Media</media:title>
            </media:group><title>Entry</title></entry></feed>"#;
        let feed = parse_feed(xml).unwrap();
        assert_eq!(feed.channel_id, None);
        assert_eq!(feed.channel_title.as_deref(), Some("Feed"));
        assert_eq!(feed.entries[0].title, "Entry");
    }

    #[test]
    fn reads_cdata_and_mixed_entities() {
        let xml = "<feed><entry><yt:videoId> v1 </yt:videoId>\
            <title><![CDATA[Fish & <Chips>]]> &amp; more &#x263A;</title>\
            <media:group><media:description><![CDATA[a]]>&lt;b</media:description></media:group>\
            </entry></feed>";
        let feed = parse_feed(xml).unwrap();
        let e = &feed.entries[0];
        assert_eq!(e.video_id, "v1", "ids are trimmed");
        assert_eq!(e.title, "Fish & <Chips> & more \u{263A}");
        assert_eq!(e.description.as_deref(), Some("a<b"));
    }

    #[test]
    fn missing_optional_fields_are_tolerated() {
        let xml = "<feed><entry><yt:videoId>v1</yt:videoId></entry><entry>\
            <yt:videoId>v2</yt:videoId><published>yesterday</published></entry></feed>";
        let feed = parse_feed(xml).unwrap();
        assert_eq!(feed.channel_id, None);
        assert_eq!(feed.channel_title, None);
        assert_eq!(
            feed.entries,
            vec![
                FeedEntry { video_id: "v1".into(), title: String::new(), published_at: None, description: None },
                FeedEntry { video_id: "v2".into(), title: String::new(), published_at: None, description: None },
            ]
        );
    }

    #[test]
    fn entry_without_video_id_falls_back_to_atom_id_or_is_skipped() {
        let xml = "<feed><entry><id>yt:video:fromatomid</id><title>A</title></entry>\
            <entry><id>urn:something:else</id><title>B</title></entry>\
            <entry><yt:videoId>  </yt:videoId><title>C</title></entry>\
            <entry><yt:videoId>ok</yt:videoId><title>D</title></entry></feed>";
        let feed = parse_feed(xml).unwrap();
        let ids: Vec<_> = feed.entries.iter().map(|e| e.video_id.as_str()).collect();
        assert_eq!(ids, ["fromatomid", "ok"]);
    }

    #[test]
    fn empty_feed_and_self_closing_elements() {
        let feed = parse_feed("<?xml version=\"1.0\"?><feed><title/></feed>").unwrap();
        assert_eq!(feed.channel_title.as_deref(), Some(""));
        assert!(feed.entries.is_empty());
    }

    #[test]
    fn bom_and_comments_are_ignored() {
        let xml = "\u{feff}<?xml version=\"1.0\"?><!-- hi --><feed><!-- c -->\
            <entry><yt:videoId>v</yt:videoId></entry></feed>";
        assert_eq!(parse_feed(xml).unwrap().entries.len(), 1);
    }

    #[test]
    fn malformed_xml_is_an_error() {
        for bad in [
            "<feed><entry></feed>",
            "<feed><title>x</titel></feed>",
            "<feed><entry><yt:videoId>v</yt:videoId></entry>",
            "<feed><title>a & b</title></feed>",
            "<feed attr=\"unterminated></feed>",
            "",
            "   ",
            "not xml at all",
            "<feed></feed><feed></feed>",
        ] {
            assert!(parse_feed(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn unknown_entity_is_reported() {
        let err = parse_feed("<feed><title>&nbsp;</title></feed>").unwrap_err();
        assert!(matches!(err, FeedError::UnknownEntity(ref n) if n == "nbsp"), "{err:?}");
    }

    #[test]
    fn html_page_is_not_a_feed() {
        let err = parse_feed("<html><body>consent</body></html>").unwrap_err();
        assert!(matches!(err, FeedError::NotAFeed(ref n) if n == "html"), "{err:?}");
        assert_eq!(err.to_string(), "document root is `html`, not an atom feed");
    }

    #[test]
    fn render_then_parse_round_trips() {
        let entries = vec![
            entry(
                "aaaaaaaaaaa",
                "Tom & Jerry <live> \"quoted\" 'single'",
                Some("Ünïcödé — 日本語 🎉\nsecond line\r\nthird & <last>"),
            ),
            entry("bbbbbbbbbbb", "  padded title  ", None),
            FeedEntry {
                video_id: "c-_123".into(),
                title: "]]> looks like cdata end".into(),
                published_at: Some(Utc.timestamp_opt(1_700_000_000, 123_000_000).unwrap()),
                description: Some("tab\there".into()),
            },
            FeedEntry { video_id: "d".into(), title: String::new(), published_at: None, description: None },
        ];
        let rendered: Vec<youtube_standin::feed::FeedEntry> = entries
            .iter()
            .map(|e| youtube_standin::feed::FeedEntry {
                video_id: e.video_id.clone(),
                title: e.title.clone(),
                published_at: e.published_at,
                description: e.description.clone(),
            })
            .collect();
        let xml = youtube_standin::feed::render_feed("UC&weird<id>", "Ch & \"Co\" <ß>", &rendered, |id| {
            format!("http://127.0.0.1:8080/watch?v={id}&x=\"1\"")
        });
        let feed = parse_feed(&xml).unwrap();
        assert_eq!(feed.channel_id.as_deref(), Some("UC&weird<id>"));
        assert_eq!(feed.channel_title.as_deref(), Some("Ch & \"Co\" <ß>"));
        assert_eq!(feed.entries, entries);
    }
}
