//! What the node's agent reports about its job and video actors beyond what ractor keeps: when each
//! started, the stage a VideoActor waits on, and the events routed to it that it has not handled
//! yet. ractor exposes no mailbox length, so that count is kept here: the EventRouter counts an
//! event in when it casts it, the actor counts it out when it handles it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use ractor::{ActorCell, ActorId, ActorStatus};

use crate::domain::Stage;

#[derive(Default)]
pub struct Board {
    actors: Mutex<Actors>,
}

#[derive(Default)]
struct Actors {
    by_id: HashMap<ActorId, (ActorCell, Entry)>,
    /// The size after the last sweep of stopped actors (a killed actor never says it left).
    swept: usize,
}

/// One actor's line on the board.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub since: Instant,
    /// The stage whose result a VideoActor waits for.
    pub stage: Option<Stage>,
    /// Events routed to it and not handled yet.
    pub waiting: u64,
}

impl Board {
    fn with<T>(&self, f: impl FnOnce(&mut Actors) -> T) -> T {
        f(&mut self.actors.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The actor started (the end of its `pre_start`).
    pub fn joined(&self, cell: ActorCell) {
        self.with(|actors| {
            let entry = Entry { since: Instant::now(), stage: None, waiting: 0 };
            actors.by_id.insert(cell.get_id(), (cell, entry));
            if actors.by_id.len() >= 2 * actors.swept.max(64) {
                actors.by_id.retain(|_, (cell, _)| cell.get_status() != ActorStatus::Stopped);
                actors.swept = actors.by_id.len();
            }
        });
    }

    pub fn left(&self, id: ActorId) {
        self.with(|actors| actors.by_id.remove(&id));
    }

    /// An event was cast to the actor.
    pub fn sent(&self, id: ActorId) {
        self.with(|actors| {
            if let Some((_, entry)) = actors.by_id.get_mut(&id) {
                entry.waiting += 1;
            }
        });
    }

    /// The actor took an event from its mailbox.
    pub fn taken(&self, id: ActorId) {
        self.with(|actors| {
            if let Some((_, entry)) = actors.by_id.get_mut(&id) {
                entry.waiting = entry.waiting.saturating_sub(1);
            }
        });
    }

    pub fn stage(&self, id: ActorId, stage: Option<Stage>) {
        self.with(|actors| {
            if let Some((_, entry)) = actors.by_id.get_mut(&id) {
                entry.stage = stage;
            }
        });
    }

    pub fn get(&self, id: ActorId) -> Option<Entry> {
        self.with(|actors| actors.by_id.get(&id).map(|(_, entry)| *entry))
    }
}

#[cfg(test)]
mod tests {
    use ractor::{Actor, ActorProcessingErr, ActorRef};

    use super::*;

    struct Idle;
    impl Actor for Idle {
        type Msg = ();
        type State = ();
        type Arguments = ();
        async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn events_are_counted_in_and_out_and_killed_actors_swept() {
        let board = Board::default();
        let (actor, handle) = Actor::spawn(None, Idle, ()).await.unwrap();
        let id = actor.get_id();
        board.sent(id);
        assert_eq!(board.get(id), None, "not on the board before it joined");
        board.joined(actor.get_cell());
        board.sent(id);
        board.sent(id);
        board.taken(id);
        board.stage(id, Some(Stage::Download));
        let entry = board.get(id).unwrap();
        assert_eq!((entry.waiting, entry.stage), (1, Some(Stage::Download)));
        board.taken(id);
        board.taken(id);
        assert_eq!(board.get(id).unwrap().waiting, 0, "never below zero");

        // Killed: it never says it left; a later sweep drops it.
        actor.kill();
        handle.await.unwrap();
        assert!(board.get(id).is_some(), "kept until a sweep");
        let mut others = Vec::new();
        for _ in 0..128 {
            let (other, _) = Actor::spawn(None, Idle, ()).await.unwrap();
            board.joined(other.get_cell());
            others.push(other);
        }
        assert_eq!(board.get(id), None, "swept");
        assert_eq!(board.with(|a| a.by_id.len()), 128, "the running ones stay");
        for other in others {
            other.stop(None);
        }
    }
}
