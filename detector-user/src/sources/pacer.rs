//! The consumer's poll timer: a `timerfd` in the tokio reactor.
//!
//! The kernel programs submit records without waking the consumer (a wake-up per record costs
//! ≈ 3 µs), so the consumer looks on a timer. tokio's own timers have millisecond resolution,
//! which put ≈ 1 ms (half the interval on average, plus the tick) into every alert's latency;
//! a timerfd fires at the requested microsecond. The interval adapts: short while records flow
//! (a detection is being completed then), the longer idle interval for a while after, and once
//! nothing has come for [`ASLEEP_AFTER`] the consumer *sleeps*: it tells the kernel (which then
//! wakes it with the first record) and waits on a long safety timer only, so an idle agent
//! does not wake a thousand times a second.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// Records seen within this long keep the consumer on the active interval.
const ACTIVE_FOR: Duration = Duration::from_millis(50);

/// No records for this long: the consumer may sleep until the kernel wakes it.
pub(crate) const ASLEEP_AFTER: Duration = Duration::from_millis(200);

/// Asleep, the consumer still looks this often: housekeeping, and the bound on how long a
/// record can wait if it raced the consumer going to sleep (the kernel's check of the flag is
/// not ordered after its reservation).
pub(crate) const ASLEEP_SAFETY: Duration = Duration::from_millis(25);

struct TimerFd(OwnedFd);

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// An adaptive one-shot timer.
pub(crate) struct Pacer {
    fd: AsyncFd<TimerFd>,
    idle: Duration,
    active: Duration,
    last_records: Option<Instant>,
    started: Instant,
    /// The kernel can wake a sleeping consumer (its flag map is there).
    can_sleep: bool,
}

impl Pacer {
    /// A pacer waiting `active` while records flow and `idle` otherwise.
    pub(crate) fn new(idle: Duration, active: Duration) -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned below.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: the TimerFd owns its fd for as long as the AsyncFd owns the TimerFd.
        let fd = unsafe { AsyncFd::register(TimerFd(owned)) }?;
        Ok(Self {
            fd,
            idle,
            active: active.min(idle),
            last_records: None,
            started: Instant::now(),
            can_sleep: false,
        })
    }

    /// Lets the pacer sleep when idle: the caller raises the kernel's wake flag first.
    pub(crate) fn allow_sleep(&mut self) {
        self.can_sleep = true;
    }

    /// Whether the next wait may be a sleep (nothing for [`ASLEEP_AFTER`]).
    pub(crate) fn would_sleep(&self) -> bool {
        self.can_sleep
            && self.last_records.unwrap_or(self.started).elapsed() >= ASLEEP_AFTER
            && self.idle < ASLEEP_SAFETY
    }

    /// Tells the pacer whether the last look found records.
    pub(crate) fn saw(&mut self, records: usize) {
        if records > 0 {
            self.last_records = Some(Instant::now());
        }
    }

    /// The interval the next wait uses when not asleep.
    pub(crate) fn interval(&self) -> Duration {
        match self.last_records {
            Some(t) if t.elapsed() < ACTIVE_FOR => self.active,
            _ => self.idle,
        }
    }

    /// Arms the timer for the current interval, or the safety interval when `asleep` (the
    /// caller raised the kernel's wake flag and found the ring empty after it).
    pub(crate) fn arm(&mut self, asleep: bool) -> io::Result<()> {
        let d = if asleep {
            ASLEEP_SAFETY
        } else {
            self.interval()
        }
        .max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: d.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and spec; the old value is not wanted.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd.get_ref().as_raw_fd(),
                0,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the armed timer fires (cancel-safe: dropping the future leaves the timer
    /// armed, and the next `arm` re-arms it).
    pub(crate) async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes into an 8-byte buffer from our own fd.
            let n = unsafe {
                libc::read(
                    self.fd.get_ref().as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            };
            if n == 8 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_at_sub_millisecond_intervals_when_active() {
        let mut p =
            Pacer::new(Duration::from_millis(20), Duration::from_micros(200)).expect("timerfd");
        assert_eq!(p.interval(), Duration::from_millis(20));
        p.saw(0);
        assert_eq!(p.interval(), Duration::from_millis(20));
        p.saw(3);
        assert_eq!(p.interval(), Duration::from_micros(200));
        // 100 active waits take far less than 100 ms: each is ~200 µs, not a 1 ms tokio tick.
        let t = Instant::now();
        for _ in 0..100 {
            p.saw(1);
            p.arm(false).expect("arm");
            p.fired().await.expect("fired");
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(20), "{took:?}");
        assert!(took < Duration::from_millis(80), "{took:?}");
    }

    #[tokio::test]
    async fn idle_interval_after_records_stop() {
        let mut p =
            Pacer::new(Duration::from_millis(5), Duration::from_micros(100)).expect("timerfd");
        p.last_records = Instant::now().checked_sub(ACTIVE_FOR * 2);
        assert_eq!(p.interval(), Duration::from_millis(5));
        let t = Instant::now();
        p.arm(false).expect("arm");
        p.fired().await.expect("fired");
        assert!(t.elapsed() >= Duration::from_millis(5));
    }

    #[tokio::test]
    async fn sleeps_only_when_allowed_and_idle_long_enough() {
        let mut p =
            Pacer::new(Duration::from_millis(1), Duration::from_micros(500)).expect("timerfd");
        p.last_records = Instant::now().checked_sub(ASLEEP_AFTER * 2);
        assert!(!p.would_sleep(), "no kernel flag: never sleep");
        p.allow_sleep();
        assert!(p.would_sleep());
        p.saw(1);
        assert!(!p.would_sleep(), "records just came");
        // An idle interval as long as the safety interval gains nothing from sleeping.
        let mut q = Pacer::new(ASLEEP_SAFETY, Duration::from_micros(500)).expect("timerfd");
        q.allow_sleep();
        q.last_records = Instant::now().checked_sub(ASLEEP_AFTER * 2);
        assert!(!q.would_sleep());
    }
}
