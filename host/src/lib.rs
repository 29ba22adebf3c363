//! ostore: an encrypted object store for WebAssembly applications, modelled
//! on Anypoint Object Store v2.
//!
//! Guest components reach their application's data through the WIT
//! interface `ostore:objectstore/store@1.1.0`; many instances of one
//! application share it, and no application sees another's.
//!
//! # Layout
//!
//! One module per concept, in layers; dependencies point downward only.
//!
//! | module | job |
//! |---|---|
//! | [`cli`] | the `ostore` command: flags to a [`HostConfig`](host::HostConfig); `credentials`, `tls`, and the client commands (binary side only) |
//! | [`client`] | a client of the REST and Stats APIs, for the client commands |
//! | [`host`] | the composition root: [`Host::build`](host::Host::build)`(config, manifests)`, then [`run`](host::Host::run)`(listener, admin_listener, shutdown)` |
//! | [`app`] | loading one application: manifest, key-value grants, variables, components |
//! | [`router`] | which component, API route or UI file answers a path; what a component's requests to its own application reach |
//! | [`server`] | connections, TLS, timeouts, graceful shutdown |
//! | [`budget`] | one memory budget for request bodies in flight and guests' memories |
//! | [`tls`] | rustls settings (TLS 1.2/1.3) and self-signed certificates |
//! | [`api`] | the OSv2-shaped REST and Stats APIs, `/metrics`, the token endpoint: one route table, handlers per resource, wire types |
//! | [`admin`] | the admin web UI: static files that talk only to the API |
//! | [`auth`] | client credentials (kept sealed in the backend), bearer tokens, scopes; the credentials socket `ostore credentials` uses while a host runs |
//! | [`manifest`] | reading Spin manifests (`spin.toml`) |
//! | [`runtime`] | wasmtime: engine, pooling, limits, deadlines, a fresh instance per request (WASIp2 and WASIp3), fair sharing between applications (instance caps, CPU turns, quiet failure logs), self requests and service chaining |
//! | [`component`] | `ostore:objectstore` for guests, and the embedding API |
//! | [`spin`] | Spin's key-value interfaces and wasi:keyvalue, labels, runtime config, variables |
//! | [`objectstore`] | applications, stores, partitions, keys, TTL, limits, usage and statistics; the record layout |
//! | [`encryption`] | AES-256-GCM sealing, HMAC lookup tags, the master key |
//! | [`backend`] | the storage contract (and its test suite, `contract`); redb file (group commit), Redis (standalone or Cluster, shared by several hosts) and memory backends |
//! | [`clock`] | where "now" comes from, and UTC calendar days |
//! | [`http`] | response bodies and percent-encoding |
//! | [`size`] | byte sizes as flags and config files write them (`64MiB`) |
//! | `fs` | files only their owner may read |
//!
//! # Embedding
//!
//! Add the object store to your own wasmtime host in a few lines: keep an
//! [`ObjectStoreCtx`] in your store data, lend it out through
//! [`ObjectStoreView`], and call [`add_to_linker`]. Components instantiated
//! with that linker import `ostore:objectstore/store` and see the
//! application you gave the context.
//!
//! ```
//! use std::sync::Arc;
//!
//! use ostore::backend::MemoryBackend;
//! use ostore::encryption::MasterKey;
//! use ostore::objectstore::{Config, ObjectStore};
//! use ostore::{ObjectStoreCtx, ObjectStoreCtxView, ObjectStoreView};
//! use wasmtime::component::{Linker, ResourceTable};
//! use wasmtime::{Engine, Store};
//!
//! struct MyState {
//!     table: ResourceTable,
//!     objectstore: ObjectStoreCtx,
//! }
//!
//! impl ObjectStoreView for MyState {
//!     fn objectstore(&mut self) -> ObjectStoreCtxView<'_> {
//!         ObjectStoreCtxView { ctx: &mut self.objectstore, table: &mut self.table }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::default();
//! let mut linker = Linker::<MyState>::new(&engine);
//! ostore::add_to_linker(&mut linker)?;
//!
//! // FileBackend::open(path) for data on disk, RedisBackend::connect(&config)
//! // to share it with other hosts through Redis; memory for this example.
//! let backend = Arc::new(MemoryBackend::new());
//! let objectstore = ObjectStore::open(backend, &MasterKey::generate(), Config::default()).await?;
//! let app = objectstore.application("my-app").await?;
//! let mut store = Store::new(
//!     &engine,
//!     MyState { table: ResourceTable::new(), objectstore: ObjectStoreCtx::new(app.clone()) },
//! );
//! // linker.instantiate_async(&mut store, &component).await? runs a guest
//! // against `app`'s data. The host sees the same data:
//! let partition = app.default_store().await?.partition("orders").await?;
//! partition.store("order-1", b"pending".to_vec(), Default::default()).await?;
//! assert_eq!(partition.retrieve("order-1").await?.value, b"pending");
//! # let _ = &mut store;
//! # Ok(())
//! # }
//! ```

pub mod admin;
pub mod api;
pub mod app;
pub mod auth;
pub mod backend;
mod bindings;
pub mod budget;
pub mod cli;
pub mod client;
pub mod clock;
pub mod component;
pub mod encryption;
mod fs;
pub mod host;
pub mod http;
pub mod manifest;
pub mod objectstore;
pub mod router;
pub mod runtime;
pub mod server;
pub mod size;
pub mod spin;
pub mod tls;

pub use component::{ObjectStoreCtx, ObjectStoreCtxView, ObjectStoreView, add_to_linker};

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
