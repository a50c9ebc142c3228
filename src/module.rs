//! Classifying module requests: GOPROXY paths (`$module/@v/list`, `.info`,
//! `.mod`, `.zip`, `$module/@latest`) and checksum-database paths, with the
//! `!` case-encoding decoded and module paths validated.
//!
//! (Being written: see the helper's brief.)
