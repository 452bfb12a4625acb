//! Spilling: a spooled sink's second, overflow spool, where [`SinkSet::send`] puts records
//! while the channel to the sink's task is full (the task moves them back in order).
//!
//! [`SinkSet::send`]: super::SinkSet::send

use std::sync::Arc;

use super::{spool::Queue, Item, Record, SinkError, SPILL_STEP};
use crate::config::{Format, OverflowPolicy};

/// Where [`SinkSet::send`] puts a spooled sink's alerts while the channel to its task is full:
/// a second spool, `<spool dir>/<sink>/overflow/`. While it holds anything every alert goes
/// there, so order is kept: the task first takes in what is still in the channel (older), then
/// moves the overflow into the sink's spool, and only once it is empty does `send` use the
/// channel again. Appends are plain writes (no fsync on the capture thread): they survive a
/// crash of the agent, and are fsynced when moved.
pub(super) struct Spill {
    pub(super) queue: Queue,
    /// Alerts go here, not to the channel.
    pub(super) active: bool,
    pub(super) format: Format,
    /// Why the last spill drop happened (for the notice).
    pub(super) why: &'static str,
}

pub(super) type SharedSpill = Arc<std::sync::Mutex<Spill>>;

pub(super) fn lock_spill(s: &SharedSpill) -> std::sync::MutexGuard<'_, Spill> {
    // A panic mid-append leaves a spool whose next open cuts the torn tail: still usable.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

impl Spill {
    /// Appends a record `send` could not put in the channel; returns how many records the
    /// overflow spool dropped (its bound, or a failed write), remembering why.
    pub(super) fn push(&mut self, item: &Item, sink: &str) -> u64 {
        let r = Record {
            id: item.id().to_string(),
            body: item.encode(self.format),
        };
        match self.queue.push(&r) {
            Ok(p) => {
                if p.dropped > 0 {
                    self.why = match self.queue.policy() {
                        OverflowPolicy::DropOldest => "overflow spool full, dropped oldest",
                        OverflowPolicy::DropNewest => "overflow spool full, dropped newest",
                    };
                }
                p.dropped
            }
            Err(e) => {
                self.why = "overflow spool write failed";
                tracing::error!(sink = %sink, id = %item.id(), "record dropped: {e}");
                1
            }
        }
    }
}

/// A crash between copying a step of the overflow into the spool and removing it from the
/// overflow leaves those records in both, the overflow's head equal to the spool's tail: drop
/// them from the overflow (so a restart does not deliver them twice). Returns how many.
pub(super) fn drop_moved_prefix(main: &mut Queue, over: &mut Queue) -> Result<usize, SinkError> {
    let Some((_, first)) = over.peek(1)?.into_iter().next() else {
        return Ok(0);
    };
    let tail = main.tail(SPILL_STEP)?;
    let Some(pos) = tail.iter().position(|r| r.id == first.id) else {
        return Ok(0);
    };
    let n = tail.len() - pos;
    let head = over.peek(n)?;
    let same = head.len() == n && head.iter().zip(&tail[pos..]).all(|((_, a), b)| a == b);
    match head.last() {
        Some((seq, _)) if same => {
            over.commit(*seq)?;
            Ok(n)
        }
        _ => Ok(0),
    }
}
