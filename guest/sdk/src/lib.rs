//! Write `ostore` HTTP applications in plain Rust.
//!
//! An `ostore` application is a WebAssembly component (target
//! `wasm32-wasip2`) that handles HTTP requests and keeps its state in the
//! host's object store, described by the `ostore:objectstore@1.1.0` WIT
//! package (a host of 1.1.0 or later; guests built against 1.0.0 keep
//! running on it). This crate hides the generated bindings behind two
//! small modules:
//!
//! * the crate root: [`Store`], [`Partition`] and the value types
//!   ([`Error`], [`Ttl`], [`Metadata`], [`Entry`], [`StoreOptions`]);
//! * [`http`]: [`http::Request`], [`http::Response`], the [`http::Handler`]
//!   trait and the [`http::export!`] macro that makes a type the
//!   component's `wasi:http/incoming-handler`.
//!
//! The [`wasip2`] crate is re-exported for everything else WASI offers, so a
//! guest needs no other dependency.
//!
//! # Example
//!
//! A counter that answers every request with the number of requests so far:
//!
//! ```no_run
//! use ostore_sdk::http::{Handler, Request, Response};
//! use ostore_sdk::Store;
//!
//! struct Counter;
//!
//! impl Handler for Counter {
//!     fn handle(_request: Request) -> Response {
//!         let hits = Store::open_default()
//!             .and_then(|store| store.partition("counter"))
//!             .and_then(|partition| partition.increment("hits", 1));
//!         match hits {
//!             Ok(n) => Response::text(200, format!("request number {n}\n")),
//!             Err(e) => Response::text(503, format!("{e}\n")),
//!         }
//!     }
//! }
//!
//! ostore_sdk::http::export!(Counter);
//! ```
//!
//! Build it as a `cdylib` with `cargo build --release --target
//! wasm32-wasip2`; the `.wasm` file cargo writes is already a component.

#![warn(missing_docs)]

#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "ostore:objectstore/objectstore",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod http;
mod store;

pub use store::{Entries, Error, Keys, Partition, Partitions, Result, Store};

/// The error-to-HTTP-status table the host's REST API uses too.
pub use ostore_status::{ErrorCode, Precondition};

/// The generated types of `ostore:objectstore/types`, re-exported as they
/// are because they need no wrapping.
pub use bindings::ostore::objectstore::types::{
    Entry, EntryPage, KeyPage, KeyValue, Metadata, PartitionPage, StoreOptions, Ttl,
};

/// The raw `wit-bindgen` bindings of `ostore:objectstore`, for anything the
/// wrappers in this crate do not cover.
pub mod raw {
    pub use crate::bindings::ostore::objectstore::{store, types};
}

/// The WASI 0.2 bindings this crate is built on (HTTP types, clocks, random,
/// ...), re-exported so guests need no direct dependency.
pub use wasip2;
