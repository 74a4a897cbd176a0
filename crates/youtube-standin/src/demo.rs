//! A small demo channel for the stand-in: three spoken videos on distinct topics, each in a different container,
//! the first one also carrying English captions whose text is exactly what is spoken.

use std::path::Path;

use chrono::{TimeZone, Utc};

use super::media::{self, Container, MediaError};
use super::{StandInChannel, StandInVideo};

/// The demo channel's id (matches `^UC[A-Za-z0-9_-]{22}$`).
pub const DEMO_CHANNEL_ID: &str = "UCtubesumDemoChannel0001";
/// The demo channel's title.
pub const DEMO_CHANNEL_TITLE: &str = "Tubesum Demo Channel";

/// One demo video: id (11 characters), title, container, whether it carries captions, and its script.
struct Script {
    id: &'static str,
    title: &'static str,
    container: Container,
    captioned: bool,
    published: (i32, u32, u32),
    sentences: &'static [&'static str],
}

const SCRIPTS: [Script; 3] = [
    Script {
        id: "demoBeesHny",
        title: "How Bees Make Honey",
        container: Container::Mp4Aac,
        captioned: true,
        published: (2024, 5, 3),
        sentences: &[
            "Honey bees make honey from the nectar of flowers.",
            "A worker bee sucks up the nectar and stores it in a special stomach.",
            "Back at the hive, she passes it to other bees, who add enzymes as they chew it.",
            "They spread the nectar across the wax cells of the honeycomb.",
            "Then they fan it with their wings until most of the water evaporates.",
            "Finally, the bees seal each cell with a cap of wax, and the honey keeps for years.",
        ],
    },
    Script {
        id: "demoBicycle",
        title: "A Short History of the Bicycle",
        container: Container::WebmOpus,
        captioned: false,
        published: (2024, 5, 10),
        sentences: &[
            "The first bicycle was built in Germany in eighteen seventeen.",
            "It had no pedals, so riders pushed it along with their feet.",
            "Decades later, pedals were fixed to the front wheel, which grew very large.",
            "These high wheel bicycles were fast, but riders often fell.",
            "In the eighteen eighties, the safety bicycle arrived, with two equal wheels and a chain.",
            "Its design is still the basis of the bicycles we ride today.",
        ],
    },
    Script {
        id: "demoSkyBlue",
        title: "Why the Sky Is Blue",
        container: Container::M4a,
        captioned: false,
        published: (2024, 5, 17),
        sentences: &[
            "Sunlight looks white, but it is a mixture of every color of the rainbow.",
            "When it enters the air, the light bumps into tiny gas molecules.",
            "These molecules scatter short blue waves much more than long red waves.",
            "So blue light reaches our eyes from every part of the sky.",
            "At sunset, the light travels through much more air.",
            "Most of the blue is scattered away, and the sky turns orange and red.",
        ],
    },
];

/// Each demo video's id and what is spoken in it, sentence by sentence (the reference text for
/// word error rates).
pub fn scripts() -> impl Iterator<Item = (&'static str, &'static [&'static str])> {
    SCRIPTS.iter().map(|script| (script.id, script.sentences))
}

/// Builds the demo channel, writing its media (`<video id>.<ext>`) into `dir`.
///
/// Each video is 20 to 40 seconds of espeak-ng speech; the WAV intermediates are removed.
pub async fn demo_channel(dir: &Path) -> Result<StandInChannel, MediaError> {
    let mut channel = StandInChannel::new(DEMO_CHANNEL_ID, DEMO_CHANNEL_TITLE);
    for script in &SCRIPTS {
        let wav = dir.join(format!("{}.wav", script.id));
        let media_path = dir.join(format!("{}.{}", script.id, script.container.extension()));
        let segments = media::speak_script(script.sentences, &wav).await?;
        let encoded = media::encode(&wav, &media_path, script.container).await;
        // Best-effort cleanup: the wav is scratch whether or not encoding worked.
        let _ = tokio::fs::remove_file(&wav).await;
        encoded?;

        let (year, month, day) = script.published;
        let mut video = StandInVideo::new(script.id, script.title)
            .description(script.sentences.first().copied().unwrap_or_default())
            .media(&media_path, script.container.content_type());
        if let Some(at) = Utc.with_ymd_and_hms(year, month, day, 12, 0, 0).single() {
            video = video.published_at(at);
        }
        if script.captioned {
            video = video.captions(segments);
        }
        channel = channel.video(video);
    }
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_ok(id: &str, prefix: &str, len: usize) -> bool {
        id.starts_with(prefix)
            && id.len() == prefix.len() + len
            && id[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn demo_ids_look_like_youtube_ids() {
        assert!(id_ok(DEMO_CHANNEL_ID, "UC", 22), "{DEMO_CHANNEL_ID}");
        for script in &SCRIPTS {
            assert!(id_ok(script.id, "", 11), "{}", script.id);
        }
        let mut containers: Vec<_> = SCRIPTS.iter().map(|s| s.container.extension()).collect();
        containers.sort_unstable();
        containers.dedup();
        assert_eq!(containers.len(), 3, "each video in its own container");
    }

    #[tokio::test]
    async fn demo_channel_has_three_spoken_videos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let channel = demo_channel(dir.path()).await.expect("demo channel");
        assert_eq!(channel.id, DEMO_CHANNEL_ID);
        assert_eq!(channel.videos.len(), 3);
        for (video, script) in channel.videos.iter().zip(&SCRIPTS) {
            let media = video.media.as_ref().expect("demo media");
            let (_, duration, _) = media::testing::probe(&media.path).await.expect("ffprobe demo media");
            assert!((20.0..=40.0).contains(&duration), "{}: {duration}s", video.id);
            assert!(video.published_at.is_some());
            match &video.captions {
                Some(segments) => {
                    let spoken: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
                    assert_eq!(spoken, script.sentences);
                    let last = segments.last().expect("segments");
                    assert!((last.end - duration).abs() < 0.5, "captions end {} vs {duration}", last.end);
                }
                None => assert!(!script.captioned),
            }
        }
        assert_eq!(channel.videos.iter().filter(|v| v.captions.is_some()).count(), 1);
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(dir.path()).await.expect("read dir");
        while let Some(entry) = entries.next_entry().await.expect("dir entry") {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        assert_eq!(names, ["demoBeesHny.mp4", "demoBicycle.webm", "demoSkyBlue.m4a"]);
    }
}
