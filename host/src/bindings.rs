//! Rust bindings of the `ostore:objectstore/objectstore` world, generated
//! from `wit/`. Resources map to the object-store layer's own handle types,
//! and the WIT `error` maps to [`HostError`](crate::component::HostError) so
//! that host code returns plain `Result`s.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "ostore:objectstore/objectstore",
    imports: { default: async | trappable },
    with: {
        "ostore:objectstore/store.store": crate::objectstore::Store,
        "ostore:objectstore/store.partition": crate::objectstore::Partition,
    },
    trappable_error_type: {
        "ostore:objectstore/types.error" => crate::component::HostError,
    },
});
