//! `[timeouts]`: how long modgate waits for each side.

use std::time::Duration;

use serde::Deserialize;

use crate::config::syntax::{ConfigDuration, Parsed, duration_or};

/// Timeouts, all positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// DNS resolution plus TCP connect to an upstream.
    pub connect: Duration,
    /// Receiving a request head from a client, and a response head from an
    /// upstream.
    pub header: Duration,
    /// No bytes in either direction on a connection or tunnel.
    pub idle: Duration,
    /// How long in-flight requests and tunnels may run after SIGINT/SIGTERM.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            header: Duration::from_secs(30),
            idle: Duration::from_secs(90),
            shutdown: Duration::from_secs(10),
        }
    }
}

/// `[timeouts]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileTimeouts {
    connect: Option<Parsed<ConfigDuration>>,
    header: Option<Parsed<ConfigDuration>>,
    idle: Option<Parsed<ConfigDuration>>,
    shutdown: Option<Parsed<ConfigDuration>>,
}

impl FileTimeouts {
    pub(crate) fn resolve(self) -> Timeouts {
        let d = Timeouts::default();
        Timeouts {
            connect: duration_or(self.connect, d.connect),
            header: duration_or(self.header, d.header),
            idle: duration_or(self.idle, d.idle),
            shutdown: duration_or(self.shutdown, d.shutdown),
        }
    }
}
