//! The video workflow as a pure state machine: no IO, exhaustively tested.
//!
//! ```text
//! discovered ─dispatch(download)→ downloading ─succeed→ downloaded ─dispatch→ extracting_audio
//!      │                               └─captions→ transcribed (audio + whisper skipped)
//!      └─reuse→ summarized             extracting_audio ─succeed→ audio_extracted ─dispatch→ transcribing
//! transcribing ─succeed→ transcribed ─dispatch→ summarizing ─succeed→ summarized
//! any in-progress state ─give_up→ failed;  any non-final state ─cancel→ cancelled
//! extracting_audio / transcribing ─redo(download)→ discovered;  transcribing ─redo(audio)→ downloaded
//! ```
//! Retries do not change the status: a retried stage stays in its in-progress state and only the
//! attempt counter (kept beside the status) moves.

use super::{Stage, VideoStatus};

/// What can happen to a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoEvent {
    /// The stage's command was handed to its pool.
    Dispatch(Stage),
    /// The stage committed its result.
    Succeed(Stage),
    /// The download stage found the transcript stored (captions it stored, or a transcript
    /// another job made): audio extraction and transcription are skipped.
    TranscriptStored,
    /// The stage failed permanently or ran out of attempts.
    GiveUp(Stage),
    Cancel,
    /// An earlier job already summarized this video and the job is not forced.
    Reuse,
    /// What the stage in flight needs is gone (media lost from the store): the earlier stage that
    /// makes it runs again, and the video goes back to where that stage starts.
    Redo(Stage),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid transition: {event:?} in state {from}")]
pub struct InvalidTransition {
    pub from: VideoStatus,
    pub event: VideoEvent,
}

/// The one transition function of the workflow.
pub fn on(from: VideoStatus, event: VideoEvent) -> Result<VideoStatus, InvalidTransition> {
    use Stage as S;
    use VideoEvent as E;
    use VideoStatus as V;
    let to = match (from, event) {
        (V::Discovered, E::Dispatch(S::Download)) => Some(V::Downloading),
        (V::Discovered, E::Reuse) => Some(V::Summarized),
        (V::Downloading, E::Succeed(S::Download)) => Some(V::Downloaded),
        (V::Downloading, E::TranscriptStored) => Some(V::Transcribed),
        (V::Downloaded, E::Dispatch(S::AudioExtraction)) => Some(V::ExtractingAudio),
        (V::ExtractingAudio, E::Succeed(S::AudioExtraction)) => Some(V::AudioExtracted),
        (V::AudioExtracted, E::Dispatch(S::Transcription)) => Some(V::Transcribing),
        (V::Transcribing, E::Succeed(S::Transcription)) => Some(V::Transcribed),
        (V::Transcribed, E::Dispatch(S::Summarization)) => Some(V::Summarizing),
        (V::Summarizing, E::Succeed(S::Summarization)) => Some(V::Summarized),
        (V::ExtractingAudio | V::Transcribing, E::Redo(S::Download)) => Some(V::Discovered),
        (V::Transcribing, E::Redo(S::AudioExtraction)) => Some(V::Downloaded),
        (state, E::GiveUp(stage)) if in_flight(state) == Some(stage) => Some(V::Failed),
        (state, E::Cancel) if !is_final(state) => Some(V::Cancelled),
        _ => None,
    };
    to.ok_or(InvalidTransition { from, event })
}

/// Final states: the VideoActor stops once it reaches one.
pub fn is_final(state: VideoStatus) -> bool {
    match state {
        VideoStatus::Summarized | VideoStatus::Failed | VideoStatus::Cancelled => true,
        VideoStatus::Discovered
        | VideoStatus::Downloading
        | VideoStatus::Downloaded
        | VideoStatus::ExtractingAudio
        | VideoStatus::AudioExtracted
        | VideoStatus::Transcribing
        | VideoStatus::Transcribed
        | VideoStatus::Summarizing => false,
    }
}

/// The stage a video at rest in `state` goes to next.
pub fn next_stage(state: VideoStatus) -> Option<Stage> {
    match state {
        VideoStatus::Discovered => Some(Stage::Download),
        VideoStatus::Downloaded => Some(Stage::AudioExtraction),
        VideoStatus::AudioExtracted => Some(Stage::Transcription),
        VideoStatus::Transcribed => Some(Stage::Summarization),
        VideoStatus::Downloading
        | VideoStatus::ExtractingAudio
        | VideoStatus::Transcribing
        | VideoStatus::Summarizing
        | VideoStatus::Summarized
        | VideoStatus::Failed
        | VideoStatus::Cancelled => None,
    }
}

/// The stage whose work is outstanding while the video is in `state`.
pub fn in_flight(state: VideoStatus) -> Option<Stage> {
    match state {
        VideoStatus::Downloading => Some(Stage::Download),
        VideoStatus::ExtractingAudio => Some(Stage::AudioExtraction),
        VideoStatus::Transcribing => Some(Stage::Transcription),
        VideoStatus::Summarizing => Some(Stage::Summarization),
        VideoStatus::Discovered
        | VideoStatus::Downloaded
        | VideoStatus::AudioExtracted
        | VideoStatus::Transcribed
        | VideoStatus::Summarized
        | VideoStatus::Failed
        | VideoStatus::Cancelled => None,
    }
}

/// The state a video is in while `stage`'s work on it is outstanding (none for discovery, which
/// is the job's): the inverse of [`in_flight`].
pub fn in_flight_state(stage: Stage) -> Option<VideoStatus> {
    match stage {
        Stage::Discovery => None,
        Stage::Download => Some(VideoStatus::Downloading),
        Stage::AudioExtraction => Some(VideoStatus::ExtractingAudio),
        Stage::Transcription => Some(VideoStatus::Transcribing),
        Stage::Summarization => Some(VideoStatus::Summarizing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use VideoStatus as V;

    #[test]
    fn in_flight_state_is_the_inverse_of_in_flight() {
        for state in VideoStatus::ALL {
            if let Some(stage) = in_flight(*state) {
                assert_eq!(in_flight_state(stage), Some(*state));
            }
        }
        assert_eq!(in_flight_state(Stage::Discovery), None);
    }

    fn all_events() -> Vec<VideoEvent> {
        let mut events = vec![VideoEvent::TranscriptStored, VideoEvent::Cancel, VideoEvent::Reuse];
        for stage in Stage::ALL {
            events.push(VideoEvent::Dispatch(*stage));
            events.push(VideoEvent::Succeed(*stage));
            events.push(VideoEvent::GiveUp(*stage));
            events.push(VideoEvent::Redo(*stage));
        }
        events
    }

    /// Every allowed transition, listed once; everything else must be rejected.
    fn allowed() -> Vec<(VideoStatus, VideoEvent, VideoStatus)> {
        use Stage as S;
        use VideoEvent as E;
        let mut table = vec![
            (V::Discovered, E::Dispatch(S::Download), V::Downloading),
            (V::Discovered, E::Reuse, V::Summarized),
            (V::Downloading, E::Succeed(S::Download), V::Downloaded),
            (V::Downloading, E::TranscriptStored, V::Transcribed),
            (V::Downloaded, E::Dispatch(S::AudioExtraction), V::ExtractingAudio),
            (V::ExtractingAudio, E::Succeed(S::AudioExtraction), V::AudioExtracted),
            (V::AudioExtracted, E::Dispatch(S::Transcription), V::Transcribing),
            (V::Transcribing, E::Succeed(S::Transcription), V::Transcribed),
            (V::Transcribed, E::Dispatch(S::Summarization), V::Summarizing),
            (V::Summarizing, E::Succeed(S::Summarization), V::Summarized),
            (V::Downloading, E::GiveUp(S::Download), V::Failed),
            (V::ExtractingAudio, E::GiveUp(S::AudioExtraction), V::Failed),
            (V::Transcribing, E::GiveUp(S::Transcription), V::Failed),
            (V::Summarizing, E::GiveUp(S::Summarization), V::Failed),
            (V::ExtractingAudio, E::Redo(S::Download), V::Discovered),
            (V::Transcribing, E::Redo(S::Download), V::Discovered),
            (V::Transcribing, E::Redo(S::AudioExtraction), V::Downloaded),
        ];
        for state in VideoStatus::ALL {
            if !is_final(*state) {
                table.push((*state, E::Cancel, V::Cancelled));
            }
        }
        table
    }

    #[test]
    fn transition_table_is_exactly_the_allowed_one() {
        let allowed = allowed();
        for state in VideoStatus::ALL {
            for event in all_events() {
                let expected = allowed.iter().find(|(f, e, _)| f == state && *e == event).map(|(_, _, t)| *t);
                match (on(*state, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{state} + {event:?}"),
                    (Err(err), None) => {
                        assert_eq!(err.from, *state);
                        assert_eq!(err.event, event);
                    }
                    (got, want) => panic!("{state} + {event:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn final_states_accept_nothing() {
        for state in [V::Summarized, V::Failed, V::Cancelled] {
            assert!(is_final(state));
            for event in all_events() {
                assert!(on(state, event).is_err(), "{state} accepted {event:?}");
            }
        }
    }

    #[test]
    fn happy_path_without_captions_visits_every_stage() {
        let mut state = V::Discovered;
        let mut visited = vec![state];
        while let Some(stage) = next_stage(state) {
            state = on(state, VideoEvent::Dispatch(stage)).unwrap();
            assert_eq!(in_flight(state), Some(stage));
            visited.push(state);
            state = on(state, VideoEvent::Succeed(stage)).unwrap();
            visited.push(state);
        }
        assert_eq!(state, V::Summarized);
        assert_eq!(visited.len(), 9);
    }

    #[test]
    fn captions_skip_audio_and_transcription() {
        let state = on(V::Discovered, VideoEvent::Dispatch(Stage::Download)).unwrap();
        let state = on(state, VideoEvent::TranscriptStored).unwrap();
        assert_eq!(state, V::Transcribed);
        assert_eq!(next_stage(state), Some(Stage::Summarization));
    }

    #[test]
    fn a_redo_goes_back_to_where_the_redone_stage_starts() {
        for (from, stage) in [(V::ExtractingAudio, Stage::Download), (V::Transcribing, Stage::AudioExtraction)] {
            let back = on(from, VideoEvent::Redo(stage)).unwrap();
            assert_eq!(next_stage(back), Some(stage), "{from} redoing {stage}");
        }
        assert!(on(V::Summarizing, VideoEvent::Redo(Stage::Transcription)).is_err(), "transcripts are not media");
    }

    #[test]
    fn stale_completion_of_another_stage_is_rejected() {
        assert!(on(V::Transcribing, VideoEvent::Succeed(Stage::Download)).is_err());
        assert!(on(V::Transcribing, VideoEvent::GiveUp(Stage::Download)).is_err());
    }

    #[test]
    fn in_flight_and_next_stage_partition_the_non_final_states() {
        for state in VideoStatus::ALL {
            let n = usize::from(in_flight(*state).is_some()) + usize::from(next_stage(*state).is_some());
            if is_final(*state) {
                assert_eq!(n, 0, "{state}");
            } else {
                assert_eq!(n, 1, "{state}");
            }
        }
    }
}
