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

#[async_trait::async_trait]
impl EventSink for EventLog {
    fn name(&self) -> &'static str {
        "event-log"
    }

    /// The line is written (to the OS) before this returns `Ok`, so the event is acknowledged to
    /// the bus only once it is in the log. A line that cannot be written is an error: the event is
    /// not acknowledged, and comes again.
    async fn accept(&self, event: &DomainEvent) -> Result<(), String> {
        let mut state = self.state.lock().expect("event log lock");
        let (dedupe, file) = &mut *state;
        if dedupe.seen(event.event_id) {
            return Ok(());
        }
        let line = match serde_json::to_string(event) {
            Ok(line) => line,
            Err(e) => {
                // Cannot happen for a decoded event; retrying would not help either.
                tracing::warn!(error = %e, "could not encode an event for the event log");
                return Ok(());
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
        if let Some(path) = &self.path
            && let Err(e) = append(file, path, &line)
        {
            *file = None;
            return Err(format!("could not append to the event log {}: {e}", path.display()));
        }
        dedupe.first(event.event_id);
        Ok(())
    }
}

/// Appends one line to the log at `path`, opening it (and its directory) first if need be.
fn append(file: &mut Option<std::fs::File>, path: &std::path::Path, line: &str) -> std::io::Result<()> {
    if file.is_none() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        *file = Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?);
    }
    file.as_mut().expect("opened above").write_all(format!("{line}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use futures::executor::block_on;

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
            block_on(log.accept(e)).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<DomainEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, vec![a, b]);
    }

    #[test]
    fn an_event_whose_line_cannot_be_written_is_refused_and_taken_when_it_can() {
        let dir = tempfile::tempdir().unwrap();
        // Its directory cannot be made: a file stands where it would go.
        std::fs::write(dir.path().join("logs"), b"").unwrap();
        let path = dir.path().join("logs/events.jsonl");
        let log = EventLog::new(Some(path.clone()));
        let a = event(JobId::new(), EventPayload::AudioExtracted { seconds: 1.5 }, Some(10));
        assert!(block_on(log.accept(&a)).unwrap_err().contains("could not append"));
        std::fs::remove_file(dir.path().join("logs")).unwrap();
        block_on(log.accept(&a)).expect("written once it can be");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "the refused event was not taken for a duplicate");
    }
}
