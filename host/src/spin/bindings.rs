//! Rust bindings of the `ostore:objectstore/spin-key-value` world: Spin's
//! key-value interface (2.0.0) and wasi:keyvalue (0.2.0-draft2). Stores and
//! buckets are partitions of the object store.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ostore:objectstore/spin-key-value",
    imports: { default: async | trappable },
    with: {
        "fermyon:spin/key-value.store": crate::objectstore::Partition,
        "wasi:keyvalue/store.bucket": crate::objectstore::Partition,
        "wasi:keyvalue/atomics.cas": super::Cas,
    },
    trappable_error_type: {
        "fermyon:spin/key-value.error" => super::KvError,
        "wasi:keyvalue/store.error" => super::KvError,
    },
});
