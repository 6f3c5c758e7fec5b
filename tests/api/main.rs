//! Integration tests: one binary, a real server per test on a free loopback port, driven by
//! HTTP and by the real Python clients.

mod access;
mod browser;
mod clients;
mod faults;
mod helpers;
mod hooks;
mod hostile;
mod indexes;
mod lifecycle;
mod metrics;
mod mirrors;
mod policies;
mod promotions;
mod retention;
mod routes;
mod runners;
mod simple;
mod trash;
mod ui;
mod uploads;
mod verdicts;
mod webhooks;
