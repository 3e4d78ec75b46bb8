//! artifact-store: the artifact storage of a build system.
//!
//! Layout (one concern per module; see ARCHITECTURE.md):
//! - `config`: typed configuration, embedded defaults, file and env overrides.
//! - `model`: names, keys, the records the index keeps (components, images, jobs), roles.
//! - `api`: the wire types of the HTTP API (handlers, OpenAPI and the CLI share them).
//! - `auth`: API keys (hashed).
//! - `store`: bytes: the blob store trait and its local directory, scratch space,
//!   safe unpack, deterministic pack, path guards.
//! - `index`: metadata behind the index trait; sled is the embedded implementation.
//! - `components`: the component store's operations (domain, no HTTP).
//! - `jobs`: durable jobs, worker pool, single-flight, live logs.
//! - `process`: the one place that spawns child processes (timeouts, logs).
//! - `build`: git, recipe, resolver, sandbox: clone -> resolve -> run -> pack -> store.
//! - `image`: container images: podman build, push to the registry, index.
//! - `http`: routes and thin handlers (actix-web).
//! - `client`: the CLI client (HTTP), as build scripts use the service.
//! - `gc`: retention, garbage collection of unreferenced blobs, verification.
//! - `metrics`: Prometheus counters, histograms and store gauges.
//! - `app`: wiring everything together at start-up.

pub mod api;
pub mod app;
pub mod auth;
pub mod build;
pub mod client;
pub mod components;
pub mod config;
pub mod gc;
pub mod http;
pub mod image;
pub mod index;
pub mod jobs;
pub mod metrics;
pub mod migrate;
pub mod model;
pub mod process;
pub mod store;
pub mod worker;
