pub mod backend;
pub mod encryption;
pub mod objectstore;
