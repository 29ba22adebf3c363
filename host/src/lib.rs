pub mod backend;
pub mod cli;
mod bindings;
pub mod component;
pub mod encryption;
pub mod manifest;
pub mod objectstore;
pub mod runtime;
pub mod server;
