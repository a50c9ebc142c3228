//! The trust verdict on an upstream certificate chain. The analysis that
//! reaches it lives in `tls`; the word itself is shared by errors, access
//! events and the admin side.

use std::fmt;

use serde::Serialize;

/// The trust verdict on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Verifies against the public roots.
    Public,
    /// Fails the public roots, verifies against a locally trusted root.
    Intercepted,
    /// Verifies against neither.
    Untrusted,
}

impl Verdict {
    /// The verdict's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Verdict::Public => "public",
            Verdict::Intercepted => "intercepted",
            Verdict::Untrusted => "untrusted",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verdict and the interception product named (for chains that fail the
/// public roots), as carried into access events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgement {
    /// The verdict.
    pub verdict: Verdict,
    /// The product, or `unknown`; `None` for public chains.
    pub vendor: Option<String>,
}
