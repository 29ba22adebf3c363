//! Rust bindings of the `ostore:objectstore/spin-key-value-async` world:
//! Spin's async key-value interface (3.0.0), used by spin-sdk 7 apps.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ostore:objectstore/spin-key-value-async",
    imports: { default: async | store | trappable },
    with: {
        "spin:key-value/key-value.store": crate::objectstore::Partition,
    },
    trappable_error_type: {
        "spin:key-value/key-value.error" => super::KvError,
    },
});
