//! The embedded adapters, for one process on one machine with no services to run: SQLite under the
//! data dir for job state and artifacts, bounded in-process channels for commands and events.
//! Nothing in the channels survives the process; jobs resume from the SQLite state at start.

pub mod in_process;
pub mod sqlite;

pub use in_process::{InProcessCommandBus, InProcessEventBus};
pub use sqlite::SqliteStore;
