//! Integration tests: real sockets on 127.0.0.1:0, real TLS, one binary with
//! one module per topic.

mod fake_dns;
mod gotool;
mod moto;
mod netns;
mod support;
mod tools;

mod access;
mod admin;
mod auth;
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
mod h2_inside;
mod inspect;
mod layout;
mod lifecycle;
mod limits;
mod local_ca;
mod loops;
mod mirror_health;
mod modules;
mod parent;
mod policy;
mod private_modules;
mod reload;
mod sumdb;
mod transparent;
mod tunnel;
mod tunnel_policy;
mod upstream_errors;
mod verdicts;
mod version_rules;
