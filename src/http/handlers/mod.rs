//! The handlers, one file per resource. Each extracts, calls the domain,
//! and answers through the shared modules below it (`respond`, `jobs`,
//! `body`, `params`, `caller`, `error`). No handler file imports another.

pub mod builds;
pub mod catalog;
pub mod components;
pub mod deps;
pub mod docs;
pub mod images;
pub mod keys;
pub mod original;
pub mod service;
pub mod workers;
