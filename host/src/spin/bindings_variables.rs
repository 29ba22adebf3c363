//! Rust bindings of the `ostore:objectstore/spin-variables` world: Spin's
//! application variables, sync (2.0.0) and async (3.0.0).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ostore:objectstore/spin-variables",
});
