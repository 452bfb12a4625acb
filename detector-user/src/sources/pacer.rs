//! The consumer's poll timer: a `timerfd` in the tokio reactor.
//!
//! The kernel programs submit records without waking the consumer (a wake-up per record costs
//! ≈ 3 µs), so the consumer looks on a timer. tokio's own timers have millisecond resolution,
//! which put ≈ 1 ms (half the interval on average, plus the tick) into every alert's latency;
//! a timerfd fires at the requested microsecond. The interval adapts: short while records flow
//! (a detection is being completed then), the longer idle interval otherwise, so an idle agent
//! does not wake thousands of times a second.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

/// Records seen within this long keep the consumer on the active interval.
const ACTIVE_FOR: Duration = Duration::from_millis(50);

struct TimerFd(OwnedFd);

impl AsRawFd for TimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// An adaptive one-shot timer.
pub struct Pacer {
    fd: AsyncFd<TimerFd>,
    idle: Duration,
    active: Duration,
    last_records: Option<Instant>,
}

impl Pacer {
    /// A pacer waiting `active` while records flow and `idle` otherwise.
    pub fn new(idle: Duration, active: Duration) -> io::Result<Self> {
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
        })
    }

    /// Tells the pacer whether the last look found records.
    pub fn saw(&mut self, records: usize) {
        if records > 0 {
            self.last_records = Some(Instant::now());
        }
    }

    /// The interval the next wait uses.
    pub fn interval(&self) -> Duration {
        match self.last_records {
            Some(t) if t.elapsed() < ACTIVE_FOR => self.active,
            _ => self.idle,
        }
    }

    /// Arms the timer for the current interval.
    pub fn arm(&mut self) -> io::Result<()> {
        let d = self.interval().max(Duration::from_micros(1));
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
    pub async fn fired(&self) -> io::Result<()> {
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
            p.arm().expect("arm");
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
        p.arm().expect("arm");
        p.fired().await.expect("fired");
        assert!(t.elapsed() >= Duration::from_millis(5));
    }
}
