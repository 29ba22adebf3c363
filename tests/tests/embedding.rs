//! An embedder's own wasmtime host, built from the README's lines, runs a
//! real guest component against the object store.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ostore::backend::MemoryBackend;
use ostore::encryption::MasterKey;
use ostore::objectstore::{Config, ObjectStore};
use ostore::{ObjectStoreCtx, ObjectStoreCtxView, ObjectStoreView};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The embedder's store data: WASI, WASI HTTP, and the object store.
struct MyState {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    objectstore: ObjectStoreCtx,
}

impl ObjectStoreView for MyState {
    fn objectstore(&mut self) -> ObjectStoreCtxView<'_> {
        ObjectStoreCtxView {
            ctx: &mut self.objectstore,
            table: &mut self.table,
        }
    }
}

impl WasiView for MyState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for MyState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

async fn call(
    pre: &ProxyPre<MyState>,
    objectstore: &ObjectStoreCtx,
    method: &str,
    path: &str,
    body: &'static str,
) -> (u16, String) {
    let mut store = Store::new(
        pre.engine(),
        MyState {
            table: ResourceTable::new(),
            wasi: WasiCtx::builder().build(),
            http: WasiHttpCtx::new(),
            objectstore: ObjectStoreCtx::new(objectstore.application().clone()),
        },
    );
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|never| -> ErrorCode { match never {} }),
        )
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let req = store
        .data_mut()
        .http()
        .new_incoming_request(Scheme::Http, req)
        .unwrap();
    let out = store.data_mut().http().new_response_outparam(tx).unwrap();
    let proxy = pre.instantiate_async(&mut store).await.unwrap();
    let task = tokio::spawn(async move {
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)
            .await
    });
    let response = rx.await.unwrap().unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    task.await.unwrap().unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_runs_in_an_embedders_host_and_the_host_sees_its_data() {
    let engine = Engine::default();
    let mut linker = Linker::<MyState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).unwrap();
    ostore::add_to_linker(&mut linker).unwrap();

    let backend = Arc::new(MemoryBackend::new());
    let objectstore = ObjectStore::open(backend, &MasterKey::generate(), Config::default())
        .await
        .unwrap();
    let app = objectstore.application("embedded").await.unwrap();
    let ctx = ObjectStoreCtx::new(app.clone());

    let component = Component::from_file(&engine, ostore_tests::guest("store-flow")).unwrap();
    let pre = ProxyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();

    let (status, text) = call(
        &pre,
        &ctx,
        "POST",
        "/store",
        r#"{"key": "k1", "value": "from the guest"}"#,
    )
    .await;
    assert_eq!(
        (status, text.as_str()),
        (200, "KEY: k1 AND VALUE: from the guest WERE SAVED OK")
    );

    // The embedder reads what the guest wrote, and the other way round.
    let partition = app
        .default_store()
        .await
        .unwrap()
        .partition("ObjectStoreTutorial")
        .await
        .unwrap();
    assert_eq!(
        partition.retrieve("k1").await.unwrap().value,
        b"from the guest"
    );
    partition
        .store("k2", b"from the host".to_vec(), Default::default())
        .await
        .unwrap();
    assert_eq!(
        call(&pre, &ctx, "GET", "/store/k2", "").await,
        (200, "from the host".into())
    );
}
