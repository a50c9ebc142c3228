//! Integration tests: real sockets on 127.0.0.1:0, real TLS, one binary with
//! one module per topic.

mod gotool;
mod support;

mod bad_input;
mod cli;
mod explain_serve;
mod forward;
mod go_e2e;
mod inspect;
mod layout;
mod lifecycle;
mod local_ca;
mod modules;
mod policy;
mod tunnel;
mod upstream_errors;
mod verdicts;
