//! The logging consumer: each event once, as a `tubesum::event_log` trace and, when a path is set,
//! one JSON line in `data_dir/events.jsonl`. Its consumer group is shared by every process, so each
//! event is logged once in the cluster.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{DEDUPE_WINDOW, Dedupe};
use crate::actors::EventSink;
use crate::domain::DomainEvent;

/// Appends each event once to its file (created if missing) and traces it.
pub struct EventLog {
    path: Option<PathBuf>,
    state: Mutex<(Dedupe, Option<std::fs::File>)>,
}

impl EventLog {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path, state: Mutex::new((Dedupe::new(DEDUPE_WINDOW), None)) }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }
}

impl EventSink for EventLog {
    fn name(&self) -> &'static str {
        "event-log"
    }

    fn accept(&self, event: &DomainEvent) {
        let mut state = self.state.lock().expect("event log lock");
        let (dedupe, file) = &mut *state;
        if !dedupe.first(event.event_id) {
            return;
        }
        let line = match serde_json::to_string(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "could not encode an event for the event log");
                return;
            }
        };
        tracing::info!(
            target: "tubesum::event_log",
            event_id = %event.event_id,
            r#type = event.payload.kind(),
            job_id = %event.job_id,
            video_id = event.video_id.as_ref().map(|v| v.as_str()),
            event = %line,
        );
        let Some(path) = &self.path else { return };
        if file.is_none() {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not open the event log");
                    return;
                }
            }
        }
        if let Some(f) = file
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::warn!(path = %path.display(), error = %e, "could not append to the event log");
            *file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventPayload, JobId, JobStatus};
    use crate::observability::tests::event;

    #[test]
    fn the_event_log_writes_each_event_once_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/events.jsonl");
        let log = EventLog::new(Some(path.clone()));
        let job = JobId::new();
        let a = event(job, EventPayload::AudioExtracted { seconds: 1.5 }, Some(10));
        let b = event(job, EventPayload::JobFinished { status: JobStatus::Failed }, None);
        for e in [&a, &b, &a] {
            log.accept(e);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<DomainEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, vec![a, b]);
    }
}
