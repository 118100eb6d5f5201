//! Ways records come in: the push batch format and the writer that makes them durable.

pub mod batch;
pub mod writer;

pub use batch::{IngestConversation, IngestError, IngestLimits, IngestRequest, PendingRecord};
pub use writer::{WriteError, Writer};
