//! Passive health of module proxies: a circuit breaker per mirror URL.
//!
//! - **Up**: requests go through. `max_fails` failures in a row (connect,
//!   TLS, timeout, 5xx: the upstream's side) mark the mirror down.
//! - **Down** for `fail_timeout`: the list skips it at once, paying no
//!   timeout. Each time a probe fails, the time doubles, up to
//!   `max_fail_timeout`.
//! - **Half-open** when that time is over: one request is let through as a
//!   probe while the others still skip; its success closes the circuit
//!   (up), its failure opens it again for longer.
//!
//! The state outlives config reloads; the thresholds are read from the
//! config in effect at each request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::config::mirrors::MirrorSettings;
use crate::core::duration::fmt_duration;

/// A mirror's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Requests go through.
    Up,
    /// Skipped until its time is over.
    Down,
    /// One probe request is under way; others skip.
    HalfOpen,
}

impl State {
    /// `up`, `down` or `half-open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::HalfOpen => "half-open",
        }
    }
}

/// What is known about one mirror.
#[derive(Debug, Clone)]
struct Entry {
    state: State,
    /// Failures in a row.
    fails: u32,
    /// The last failure's message.
    last_error: Option<String>,
    /// When the state last changed.
    since: SystemTime,
    /// While down: when it may be probed.
    until: Option<Instant>,
    /// The current down time (doubles on each failed probe).
    down_for: Duration,
    /// Requests skipped while down, for metrics.
    skipped: u64,
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            state: State::Up,
            fails: 0,
            last_error: None,
            since: SystemTime::now(),
            until: None,
            down_for: Duration::ZERO,
            skipped: 0,
        }
    }
}

/// A mirror's state as shown in the access event, metrics, `explain` and
/// the admin page.
#[derive(Debug, Clone)]
pub struct Status {
    /// The mirror URL.
    pub mirror: String,
    /// Its state.
    pub state: State,
    /// Failures in a row.
    pub fails: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub since: SystemTime,
    /// While down: how long until it is probed.
    pub retry_in: Option<Duration>,
    /// Requests that skipped it while it was down.
    pub skipped: u64,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.mirror, self.state.as_str())?;
        if self.fails > 0 {
            let since = self.since.elapsed().unwrap_or_default();
            write!(f, " ({} failures, since {} ago", self.fails, fmt_duration(since))?;
            if let Some(retry) = self.retry_in {
                write!(f, ", retry in {}", fmt_duration(retry))?;
            }
            if let Some(e) = &self.last_error {
                write!(f, ", last: {e}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Whether a request may ask a mirror now.
#[derive(Debug)]
pub enum Admission {
    /// Ask it.
    Go,
    /// Ask it as the half-open probe; report the outcome through the
    /// ticket (dropped unreported, the mirror may be probed again at once).
    Probe(ProbeTicket),
    /// Skip it: it is down (or another request is probing it).
    Skip(Status),
}

/// The right to probe a half-open mirror.
#[derive(Debug)]
pub struct ProbeTicket {
    health: Arc<Health>,
    mirror: String,
    reported: bool,
}

impl ProbeTicket {
    /// Marks the outcome as reported through [`Health`].
    pub fn reported(mut self) {
        self.reported = true;
    }
}

impl Drop for ProbeTicket {
    fn drop(&mut self) {
        if !self.reported {
            // The probe never finished (its client went away): let the
            // next request probe instead of leaving the mirror half-open.
            let mut mirrors = self.health.lock();
            if let Some(e) = mirrors.get_mut(&self.mirror) {
                if e.state == State::HalfOpen {
                    e.state = State::Down;
                    e.until = Some(Instant::now());
                }
            }
        }
    }
}

/// The health of every mirror modgate has asked.
#[derive(Debug, Default)]
pub struct Health {
    mirrors: Mutex<HashMap<String, Entry>>,
}

impl Health {
    /// No mirror known yet: all up.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.mirrors.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a request may ask `mirror` now.
    pub fn admit(self: &Arc<Self>, mirror: &str) -> Admission {
        let mut mirrors = self.lock();
        let Some(e) = mirrors.get_mut(mirror) else {
            return Admission::Go;
        };
        match e.state {
            State::Up => Admission::Go,
            State::Down if e.until.is_some_and(|until| Instant::now() >= until) => {
                e.state = State::HalfOpen;
                e.since = SystemTime::now();
                Admission::Probe(ProbeTicket {
                    health: self.clone(),
                    mirror: mirror.to_owned(),
                    reported: false,
                })
            }
            State::Down | State::HalfOpen => {
                e.skipped += 1;
                Admission::Skip(status(mirror, e))
            }
        }
    }

    /// `mirror` answered (content, or a 404/410): it is up.
    pub fn succeeded(&self, mirror: &str) {
        let mut mirrors = self.lock();
        let Some(e) = mirrors.get_mut(mirror) else { return };
        if e.state != State::Up {
            tracing::info!(mirror, after = %fmt_duration(e.down_for), "mirror is up again");
            e.since = SystemTime::now();
        }
        e.state = State::Up;
        e.fails = 0;
        e.until = None;
        e.down_for = Duration::ZERO;
    }

    /// `mirror` failed with `error`; with `settings`' thresholds it may go
    /// down. Returns its state after.
    pub fn failed(&self, mirror: &str, settings: &MirrorSettings, error: &str) -> State {
        let mut mirrors = self.lock();
        let e = mirrors.entry(mirror.to_owned()).or_default();
        e.fails = e.fails.saturating_add(1);
        e.last_error = Some(error.to_owned());
        let down_for = match e.state {
            // A failed probe: down again, for twice as long.
            State::HalfOpen => Some((e.down_for * 2).clamp(settings.fail_timeout, settings.max_fail_timeout)),
            // A request let through before the mirror went down: it stays
            // down as it was.
            State::Down => None,
            State::Up if settings.max_fails > 0 && e.fails >= settings.max_fails => Some(settings.fail_timeout),
            State::Up => None,
        };
        if let Some(down_for) = down_for {
            if e.state == State::Up {
                tracing::warn!(mirror, failures = e.fails, for_ = %fmt_duration(down_for), error, "mirror marked down");
            }
            e.state = State::Down;
            e.down_for = down_for;
            e.until = Some(Instant::now() + down_for);
            e.since = SystemTime::now();
        }
        e.state
    }

    /// Every mirror's status, by URL.
    pub fn statuses(&self) -> Vec<Status> {
        let mirrors = self.lock();
        let mut all: Vec<Status> = mirrors.iter().map(|(m, e)| status(m, e)).collect();
        all.sort_by(|a, b| a.mirror.cmp(&b.mirror));
        all
    }

    /// `mirror`'s status (up when never seen failing).
    pub fn status(&self, mirror: &str) -> Status {
        let mirrors = self.lock();
        match mirrors.get(mirror) {
            Some(e) => status(mirror, e),
            None => status(mirror, &Entry::default()),
        }
    }
}

/// `e` as it stands now: a mirror down past its time is half-open, the
/// next request probes it, though no request has come to move it there.
fn status(mirror: &str, e: &Entry) -> Status {
    let state = match e.state {
        State::Down if e.until.is_some_and(|until| Instant::now() >= until) => State::HalfOpen,
        state => state,
    };
    Status {
        mirror: mirror.to_owned(),
        state,
        fails: e.fails,
        last_error: e.last_error.clone(),
        since: e.since,
        retry_in: e
            .until
            .filter(|_| state == State::Down)
            .map(|until| until.saturating_duration_since(Instant::now())),
        skipped: e.skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_fails: u32, fail_timeout_ms: u64) -> MirrorSettings {
        MirrorSettings {
            max_fails,
            fail_timeout: Duration::from_millis(fail_timeout_ms),
            max_fail_timeout: Duration::from_millis(fail_timeout_ms * 4),
            ..MirrorSettings::default()
        }
    }

    #[test]
    fn failures_in_a_row_mark_a_mirror_down_and_success_resets_the_count() {
        let h = Health::new();
        let s = settings(2, 60_000);
        assert_eq!(h.failed("m", &s, "boom"), State::Up);
        h.succeeded("m");
        assert_eq!(h.failed("m", &s, "boom"), State::Up, "the count restarted");
        assert_eq!(h.failed("m", &s, "boom"), State::Down);
        match h.admit("m") {
            Admission::Skip(st) => {
                assert_eq!(st.state, State::Down);
                assert_eq!(st.fails, 2);
                assert!(st.retry_in.is_some_and(|r| r > Duration::from_secs(50)));
                assert!(st.to_string().contains("last: boom"), "{st}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(h.admit("other"), Admission::Go));
    }

    #[test]
    fn after_fail_timeout_one_probe_goes_and_its_outcome_decides() {
        let h = Health::new();
        let s = settings(1, 20);
        h.failed("m", &s, "down");
        std::thread::sleep(Duration::from_millis(30));
        let Admission::Probe(ticket) = h.admit("m") else {
            panic!("the first request after fail_timeout probes")
        };
        assert!(matches!(h.admit("m"), Admission::Skip(_)), "one probe at a time");
        // The probe fails: down again, for twice as long.
        assert_eq!(h.failed("m", &s, "still down"), State::Down);
        ticket.reported();
        let st = h.status("m");
        assert!(st.retry_in.is_some_and(|r| r > Duration::from_millis(25)), "{st:?}");
        std::thread::sleep(Duration::from_millis(50));
        let Admission::Probe(ticket) = h.admit("m") else {
            panic!("probed again")
        };
        h.succeeded("m");
        ticket.reported();
        assert!(matches!(h.admit("m"), Admission::Go));
        assert_eq!(h.status("m").state, State::Up);
    }

    #[test]
    fn a_probe_that_never_reports_lets_the_next_request_probe() {
        let h = Health::new();
        let s = settings(1, 1);
        h.failed("m", &s, "x");
        std::thread::sleep(Duration::from_millis(5));
        let Admission::Probe(ticket) = h.admit("m") else {
            panic!()
        };
        drop(ticket);
        assert!(matches!(h.admit("m"), Admission::Probe(_)));
    }

    /// A mirror down past its time reads half-open on the admin page and
    /// in the metrics, though no request has come to probe it yet.
    #[test]
    fn a_mirror_down_past_its_time_reads_half_open_before_any_request() {
        let h = Health::new();
        let s = settings(1, 10);
        h.failed("m", &s, "x");
        assert_eq!(h.status("m").state, State::Down);
        std::thread::sleep(Duration::from_millis(15));
        let st = h.status("m");
        assert_eq!((st.state, st.retry_in), (State::HalfOpen, None), "{st:?}");
        assert_eq!(h.statuses()[0].state, State::HalfOpen);
        assert!(matches!(h.admit("m"), Admission::Probe(_)));
    }

    #[test]
    fn max_fails_zero_never_marks_down_and_backoff_is_capped() {
        let h = Health::new();
        let never = settings(0, 10);
        for _ in 0..10 {
            assert_eq!(h.failed("n", &never, "x"), State::Up);
        }
        let s = settings(1, 10);
        h.failed("m", &s, "x");
        // Failures of requests let through before it went down change nothing.
        h.failed("m", &s, "x");
        assert!(h.status("m").retry_in.is_some_and(|r| r <= Duration::from_millis(10)));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(45));
            let Admission::Probe(ticket) = h.admit("m") else {
                panic!()
            };
            h.failed("m", &s, "x");
            ticket.reported();
        }
        let st = h.status("m");
        assert!(
            st.retry_in
                .is_some_and(|r| r > Duration::from_millis(20) && r <= Duration::from_millis(40)),
            "doubled, then capped at max_fail_timeout: {st:?}"
        );
    }
}
