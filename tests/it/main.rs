//! Integration tests: real sockets on 127.0.0.1:0, real TLS, one binary with
//! one module per topic.

mod fake_dns;
mod gotool;
mod moto;
mod support;

mod access;
mod admin;
mod bad_input;
mod cache;
mod cache_store;
mod cli;
mod conformance;
mod dns;
mod doctor;
mod explain_serve;
mod faults;
mod forward;
mod front_door;
mod go_e2e;
mod inspect;
mod layout;
mod lifecycle;
mod limits;
mod local_ca;
mod modules;
mod policy;
mod reload;
mod sumdb;
mod tunnel;
mod tunnel_policy;
mod upstream_errors;
mod verdicts;
