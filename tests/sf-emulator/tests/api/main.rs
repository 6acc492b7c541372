//! Integration tests: the emulator over real HTTP(S) with reqwest.

mod binary;
mod common;
mod faults;
mod oauth;
mod omni;
mod polymorphic;
mod pubsub;
mod query;
mod search;
mod server;
mod soap;
mod sobjects;
mod telephony;
