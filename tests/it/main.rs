//! Integration tests: real sockets on 127.0.0.1:0, real TLS, one binary with
//! one module per topic.

mod support;

mod bad_input;
mod cli;
mod forward;
mod lifecycle;
mod policy;
mod tunnel;
mod upstream_errors;
