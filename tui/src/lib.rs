//! `withdraw-console`: the operator's terminal for withdrawd. It talks only to the admin
//! API (`withdraw_core::wire` shapes) and links no adapter.

pub mod api;
pub mod app;
pub mod view;
