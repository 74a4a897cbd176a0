//! A channel's Atom feed, written the way YouTube writes it (`/feeds/videos.xml?channel_id=…`).
//! tubesum's parser is a separate implementation; its tests round-trip through this writer.

use chrono::{DateTime, SecondsFormat, Utc};

/// One video of a channel feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub video_id: String,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    pub description: Option<String>,
}

/// Renders a feed shaped like YouTube's.
///
/// `video_url(video_id)` gives each entry's `<link rel="alternate">` target, so a stand-in can
/// point at itself. All text is escaped; `\r` is written as `&#13;` so it survives XML line-end
/// normalisation. Control characters that XML 1.0 cannot carry (U+0000–U+001F other than
/// tab, line feed and carriage return) are dropped. A missing description is written as an
/// empty `media:description`, a missing publication time omits `published`/`updated`.
pub fn render_feed(
    channel_id: &str,
    channel_title: &str,
    entries: &[FeedEntry],
    video_url: impl Fn(&str) -> String,
) -> String {
    let cid = escape_text(channel_id);
    let ctitle = escape_text(channel_title);
    let channel_url = escape_attr(&format!("https://www.youtube.com/channel/{channel_id}"));
    let self_url = escape_attr(&format!("http://www.youtube.com/feeds/videos.xml?channel_id={channel_id}"));
    let mut out = String::with_capacity(1024 + entries.len() * 1024);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<feed xmlns:yt=\"http://www.youtube.com/xml/schemas/2015\" \
         xmlns:media=\"http://search.yahoo.com/mrss/\" xmlns=\"http://www.w3.org/2005/Atom\">\n",
    );
    out.push_str(&format!(
        " <link rel=\"self\" href=\"{self_url}\"/>\n \
         <id>yt:channel:{cid}</id>\n \
         <yt:channelId>{cid}</yt:channelId>\n \
         <title>{ctitle}</title>\n \
         <link rel=\"alternate\" href=\"{channel_url}\"/>\n \
         <author>\n  <name>{ctitle}</name>\n  <uri>{channel_url}</uri>\n </author>\n"
    ));
    for entry in entries {
        let vid = escape_text(&entry.video_id);
        let vid_attr = escape_attr(&entry.video_id);
        let title = escape_text(&entry.title);
        let link = escape_attr(&video_url(&entry.video_id));
        out.push_str(&format!(
            " <entry>\n  <id>yt:video:{vid}</id>\n  <yt:videoId>{vid}</yt:videoId>\n  \
             <yt:channelId>{cid}</yt:channelId>\n  <title>{title}</title>\n  \
             <link rel=\"alternate\" href=\"{link}\"/>\n  \
             <author>\n   <name>{ctitle}</name>\n   <uri>{channel_url}</uri>\n  </author>\n"
        ));
        if let Some(published) = entry.published_at {
            let stamp = published.to_rfc3339_opts(SecondsFormat::AutoSi, false);
            out.push_str(&format!("  <published>{stamp}</published>\n  <updated>{stamp}</updated>\n"));
        }
        let description = entry.description.as_deref().map(escape_text);
        out.push_str(&format!(
            "  <media:group>\n   <media:title>{title}</media:title>\n   \
             <media:content url=\"https://www.youtube.com/v/{vid_attr}?version=3\" \
             type=\"application/x-shockwave-flash\" width=\"640\" height=\"390\"/>\n   \
             <media:thumbnail url=\"https://i1.ytimg.com/vi/{vid_attr}/hqdefault.jpg\" \
             width=\"480\" height=\"360\"/>\n   \
             <media:description>{}</media:description>\n   \
             <media:community>\n    \
             <media:starRating count=\"0\" average=\"0.00\" min=\"1\" max=\"5\"/>\n    \
             <media:statistics views=\"0\"/>\n   </media:community>\n  \
             </media:group>\n </entry>\n",
            description.unwrap_or_default()
        ));
    }
    out.push_str("</feed>\n");
    out
}

fn escape_text(raw: &str) -> String {
    escape(raw, false)
}

fn escape_attr(raw: &str) -> String {
    escape(raw, true)
}

fn escape(raw: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(raw.len());
    for ch in raw.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(ch),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn entry(id: &str, title: &str, description: Option<&str>) -> FeedEntry {
        FeedEntry {
            video_id: id.into(),
            title: title.into(),
            published_at: Some(Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap()),
            description: description.map(Into::into),
        }
    }

    #[test]
    fn render_looks_like_youtube() {
        let xml = render_feed("UC1", "Chan", &[entry("vid", "T", Some("D"))], |id| {
            format!("https://www.youtube.com/watch?v={id}")
        });
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<feed "));
        assert!(xml.contains("<yt:videoId>vid</yt:videoId>"));
        assert!(xml.contains("<link rel=\"alternate\" href=\"https://www.youtube.com/watch?v=vid\"/>"));
        assert!(xml.contains("<published>2024-01-02T03:04:05+00:00</published>"));
        assert!(xml.contains("<media:description>D</media:description>"));
        assert!(xml.contains("xmlns=\"http://www.w3.org/2005/Atom\""));
    }

    #[test]
    fn escape_drops_illegal_control_characters() {
        assert_eq!(escape_text("a\u{0}b\u{1b}c\td\r"), "abc\td&#13;");
        assert_eq!(escape_attr("a\nb\tc"), "a&#10;b&#9;c");
    }
}
