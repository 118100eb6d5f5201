//! Ways records come in: pushed batches and pulled uploads, and the writer that makes them durable.

pub mod batch;
pub mod duckdb_cli;
pub mod duckdb_upload;
pub mod ledger;
pub mod manifest;
pub mod memory;
pub mod pull;
pub mod retry;
pub mod session_buddy_db;
pub mod session_buddy_graph;
pub mod upload;
pub mod upload_data;
pub mod upload_processor;
pub mod upload_status;
pub mod writer;

pub use batch::{IngestConversation, IngestError, IngestLimits, IngestRequest, PendingRecord};
pub use writer::{WriteError, Writer};
