//! Alert delivery (delivery issue): several sinks at once, each with its own bounded queue
//! (memory, or an on-disk spool) and its own task, so that a slow or unreachable sink never
//! blocks capture or the other sinks.
//!
//! Guarantees: a record leaves a sink's queue only after the sink accepted it (HTTP 2xx, a
//! complete write); deliveries retry with exponential backoff and jitter for ever; with a
//! spool, what is held survives a crash and a restart and is delivered first, in order; a
//! burst larger than the channel to a spooled sink's task spills to a second on-disk spool and
//! keeps its order (`<spool dir>/<sink>/overflow/`), so nothing is lost before the spool. When a queue is full
//! its policy (drop oldest / drop newest) applies, the drops are counted in
//! [`SinkStats`], logged, and announced in band by an alert with rule id
//! [`format::OVERFLOW_RULE_ID`] delivered through the same sink: nothing disappears
//! silently. A crash may repeat records delivered since the spool's last head update; every
//! alert carries a unique `id` for the receiver to dedup on.

mod backoff;
pub(crate) mod file;
pub mod format;
pub(crate) mod http;
mod set;
mod spill;
pub(crate) mod spool;
pub(crate) mod stdout;
pub(crate) mod syslog;
mod task;

pub use set::SinkSet;
pub(crate) use set::SinkSpec;

use std::{
    future::Future,
    pin::Pin,
    sync::{atomic::AtomicU64, Arc},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use crate::{config::Format, engine::Alert, ledger::query::InventoryRecord};
use spool::Queue;

/// What sinks deliver: alerts, and the credential ledger's inventory records.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    /// An alert.
    Alert(Alert),
    /// A credential inventory record (periodic export).
    Inventory(InventoryRecord),
}

impl Item {
    /// The id receivers dedup on.
    pub(crate) fn id(&self) -> &str {
        match self {
            Item::Alert(a) => &a.id,
            Item::Inventory(r) => &r.id,
        }
    }

    /// The document in `format`.
    pub(crate) fn encode(&self, format: Format) -> Vec<u8> {
        match self {
            Item::Alert(a) => format::encode(a, format),
            Item::Inventory(r) => format::encode_inventory(r, format),
        }
    }
}

/// One alert encoded for a sink: the id receivers dedup on, and the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// The alert id.
    pub(crate) id: String,
    /// One JSON document, no trailing newline.
    pub(crate) body: Vec<u8>,
}

/// A boxed future (sinks are trait objects).
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivery and set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// I/O on the destination.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The spool's files.
    #[error("spool: {0}")]
    Spool(String),
    /// The receiver answered, but not with success.
    #[error("HTTP {status}: {body}")]
    Status {
        /// Status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// The request did not complete (connect, TLS, timeout).
    #[error("{0}")]
    Transport(String),
    /// The sink cannot be built (bad certificate, unreadable token file, …).
    #[error("{0}")]
    Setup(String),
}

/// A destination. `deliver` succeeds only when the whole batch was accepted; a failed batch is
/// retried whole (receivers dedup by id).
pub(crate) trait Sink: Send {
    /// Delivers a batch, in order.
    fn deliver<'a>(&'a mut self, batch: &'a [Record]) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// Counters of one sink (shared with the [`SinkSet`] and its owner).
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Alerts accepted by the destination.
    pub delivered: AtomicU64,
    /// Failed delivery attempts.
    pub failures: AtomicU64,
    /// Alerts dropped (queue or spool full, or the channel to the sink's task full).
    pub(crate) dropped: AtomicU64,
    /// In-band overflow alerts delivered.
    pub(crate) overflow_notices: AtomicU64,
    /// Alerts held (queue or spool).
    pub(crate) queued: AtomicU64,
    /// Bytes held.
    pub(crate) queued_bytes: AtomicU64,
    /// Alerts found in the spool at start (left by a previous run).
    pub(crate) recovered: AtomicU64,
    /// Drops not yet announced in band (channel-full drops are added here by the sender).
    pending_notice: AtomicU64,
}

/// How long shutdown waits by default for sinks to deliver what they hold.
pub(crate) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity of the channel from the capture loop to each sink's task.
const CHANNEL: usize = 16 * 1024;
/// Records held in memory by a sink without a spool.
const MEMORY_QUEUE: usize = 64 * 1024;
/// Spilled records moved into the spool per step (the capture loop waits for a step when it
/// spills at the same time).
const SPILL_STEP: usize = 4096;

/// What the capture side sends a sink's task.
enum Msg {
    Item(Arc<Item>),
    Flush(oneshot::Sender<()>),
    Shutdown(Instant),
    /// Reload replaced this sink: deliver what it holds until the instant, then hand the rest
    /// back.
    Retire(Instant, oneshot::Sender<Queue>),
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;
