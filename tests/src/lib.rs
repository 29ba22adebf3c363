//! Helpers for the integration tests: build the guests, set up applications
//! and their data in a temporary directory, and start hosts on a free
//! loopback port: in this process through the library (most tests), or as
//! the `ostore` binary (for what only the binary does: flags, signals,
//! exit codes and messages).

pub mod load;
mod process;
pub mod redis;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use ostore::api::wire::{TokenRequest, TokenResponse};
use ostore::auth::{Principal, Scope};
use ostore::backend::BackendConfig;
use ostore::clock::ManualClock;
use ostore::host::{AdminUi, DataDir, Host, HostConfig, HostError, Sandbox};
use ostore::manifest::Manifest;
use ostore::runtime::{Runtime, SandboxConfig};

pub use process::{Finished, OstoreProcess, create_credential, ostore_bin, run_ostore};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built component of guest crate `name` (e.g. `store-flow`). The guest
/// workspace is built once per test process, in release mode, with the
/// cargo that runs the tests.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let root = repo_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--manifest-path",
            ])
            .arg(root.join("guest/Cargo.toml"))
            // The host's flags and target dir are not the guests'.
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .expect("running cargo to build the guests");
        assert!(status.success(), "building the guests failed");
        root.join("guest/target/wasm32-wasip2/release")
    });
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// Writes a Spin manifest for application `name` into `dir`, serving each
/// `(route, component id, wasm file)`.
pub fn write_manifest(dir: &Path, name: &str, routes: &[(&str, &str, &Path)]) -> PathBuf {
    let mut text = format!("spin_manifest_version = 2\n[application]\nname = \"{name}\"\n");
    for (route, id, _) in routes {
        text += &format!("[[trigger.http]]\nroute = \"{route}\"\ncomponent = \"{id}\"\n");
    }
    let mut seen = Vec::new();
    for (_, id, wasm) in routes {
        if !seen.contains(id) {
            seen.push(id);
            text += &format!(
                "[component.{id}]\nsource = {:?}\n",
                wasm.display().to_string()
            );
        }
    }
    std::fs::create_dir_all(dir).expect("creating the manifest directory");
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("writing the manifest");
    path
}

/// One engine for every host this test process starts with the default
/// sandbox, so that each guest is compiled once (debug builds of wasmtime
/// compile slowly).
fn shared_runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(SandboxConfig::default()).expect("a wasmtime engine"))
        .clone()
}

/// Everything the hosts of this process logged, at debug level.
pub fn host_log() -> String {
    log_buffer().lock().unwrap().clone()
}

fn log_buffer() -> &'static Arc<Mutex<String>> {
    static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(String::new()));
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("ostore=debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(sink.clone()))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    })
}

struct LogWriter(Arc<Mutex<String>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap()
            .push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A client id and its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub id: String,
    pub secret: String,
}

/// A test's applications and their data, in a temporary directory that is
/// removed when the setup is dropped.
pub struct Setup {
    dir: tempfile::TempDir,
    /// The data directory hosts of this setup use.
    pub data: PathBuf,
    manifests: Vec<PathBuf>,
    /// Where hosts started in this process keep their records (redb by
    /// default), and where credentials are made.
    backend: BackendConfig,
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

impl Setup {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        Self {
            dir,
            data,
            manifests: Vec::new(),
            backend: BackendConfig::redb(),
        }
    }

    /// Keeps the records (of hosts this setup starts in this process, and
    /// of credentials it makes) in `backend`.
    pub fn backend(mut self, backend: BackendConfig) -> Self {
        self.backend = backend;
        self
    }

    /// The temporary directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory the hosts use.
    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// Adds application `name`, serving each `(route, component id, guest
    /// crate)`.
    pub fn app(mut self, name: &str, routes: &[(&str, &str, &str)]) -> Self {
        let wasm: Vec<PathBuf> = routes.iter().map(|(_, _, g)| guest(g)).collect();
        let routes: Vec<(&str, &str, &Path)> = routes
            .iter()
            .zip(&wasm)
            .map(|((route, id, _), wasm)| (*route, *id, wasm.as_path()))
            .collect();
        let path = write_manifest(self.dir.path(), name, &routes);
        self.manifests.push(path);
        self
    }

    /// Adds a manifest the test wrote itself.
    pub fn manifest(mut self, path: PathBuf) -> Self {
        self.manifests.push(path);
        self
    }

    pub fn manifests(&self) -> &[PathBuf] {
        &self.manifests
    }

    /// The manifests and data directory as `ostore up` flags, followed by
    /// `extra`.
    pub fn up_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = Vec::new();
        for m in &self.manifests {
            args.extend(["-f".to_string(), m.display().to_string()]);
        }
        args.extend(["--data-dir".to_string(), self.data.display().to_string()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts `ostore up` with these applications and `extra` flags.
    pub fn start_process(&self, extra: &[&str]) -> OstoreProcess {
        let args = self.up_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        OstoreProcess::start(&args)
    }

    fn data_dir(&self) -> DataDir {
        let data = DataDir::new(&self.data);
        data.create().expect("creating the data directory");
        data
    }

    /// Makes a credential for `principal` with `scopes` (all four if
    /// empty), as `ostore credentials create` does: in the data's database,
    /// or through the host that holds it.
    pub fn credential(&self, principal: Principal, scopes: &[Scope]) -> Credential {
        let scopes = if scopes.is_empty() {
            Scope::ALL.to_vec()
        } else {
            scopes.to_vec()
        };
        let data = self.data_dir();
        let (key, _) = data.master_key(None, None).expect("the master key");
        let backend = &self.backend;
        // On a thread and runtime of its own: callers are sync, some of them
        // inside a test's runtime.
        let new = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    runtime.block_on(async {
                        let admin = data
                            .credential_admin(&key, backend)
                            .await
                            .expect("the data's credentials");
                        admin.create(principal, scopes).await
                    })
                })
                .join()
                .expect("the credential thread")
        })
        .expect("making a credential");
        Credential {
            id: new.client_id.clone(),
            secret: new.client_secret.clone(),
        }
    }

    /// Starts a host of these applications in this process, with the
    /// defaults of `ostore up` and a manual clock.
    pub async fn start(&self) -> TestHost {
        self.start_with(|_| {}).await
    }

    /// Starts a host after `edit` has changed its configuration.
    pub async fn start_with(&self, edit: impl FnOnce(&mut HostConfig)) -> TestHost {
        log_buffer();
        let data = self.data_dir();
        let (key, _) = data.master_key(None, None).expect("the master key");
        let clock = Arc::new(ManualClock::starting_now());
        let mut config = HostConfig::new(data, key);
        config.backend = self.backend.clone();
        config.sandbox = Sandbox::Shared(shared_runtime());
        config.clock = clock.clone();
        edit(&mut config);
        let own_admin_listener = config.admin_ui == AdminUi::OwnListener;
        let manifests: Vec<Manifest> = self
            .manifests
            .iter()
            .map(|p| Manifest::load(p).expect("a valid manifest"))
            .collect();
        let host = Host::build(config, &manifests)
            .await
            .expect("building the host");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("the bound address");
        let admin_listener = own_admin_listener.then(|| {
            let admin = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            admin
                .set_nonblocking(true)
                .expect("a non-blocking listener");
            admin
        });
        let admin_addr = admin_listener
            .as_ref()
            .map_or(addr, |l| l.local_addr().expect("the bound address"));
        // The host gets threads of its own, as `ostore up` has: a test's
        // requests and its host's guests do not share two workers.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-host")
            .enable_all()
            .build()
            .expect("the host's runtime");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("the listener");
            let admin_listener = admin_listener
                .map(|l| tokio::net::TcpListener::from_std(l).expect("the admin listener"));
            host.run(listener, admin_listener, async {
                let _ = stopped.await;
            })
            .await
        });
        TestHost {
            addr,
            admin_addr,
            clock,
            stop: Some(stop),
            task,
            runtime: Some(runtime),
        }
    }
}

/// A host running in this process, on threads of its own; stopped when
/// dropped.
pub struct TestHost {
    /// The applications' listener (with the REST API).
    pub addr: SocketAddr,
    /// The admin UI's listener (with the REST API): its own, unless the
    /// configuration puts the UI on the applications' listener.
    pub admin_addr: SocketAddr,
    /// The host's clock: move it forward to let time pass.
    pub clock: Arc<ManualClock>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), HostError>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestHost {
    /// Lets `by` pass on the host's clock.
    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    /// Whether the host is still serving.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops the host as a shutdown signal would, and waits until it has
    /// answered what was in flight and closed its data.
    pub async fn stop(mut self) {
        let _ = self.stop.take().expect("stopped once").send(());
        let task = &mut self.task;
        task.await
            .expect("the host task")
            .expect("the host stops cleanly");
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A host answering HTTP on an address, in this process or as a process.
pub trait Serves {
    fn addr(&self) -> SocketAddr;

    /// Sends one request and returns the status and body.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Response> + Send {
        request(self.addr(), method, path, body.into())
    }

    fn get(&self, path: &str) -> impl Future<Output = Response> + Send {
        self.request("GET", path, Bytes::new())
    }

    /// Sends one request with extra headers (such as `authorization`).
    fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Response> + Send {
        request_with(self.addr(), method, path, headers, body.into())
    }

    /// Sends one request with `token` as its bearer token.
    fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> impl Future<Output = Response> + Send {
        let auth = format!("Bearer {token}");
        request_with(
            self.addr(),
            method,
            path,
            &[("authorization", &auth)],
            body.into(),
        )
    }

    /// Exchanges a credential for a bearer token at the token endpoint.
    fn token(&self, credential: &Credential) -> impl Future<Output = String> + Send {
        let body = serde_json::to_vec(&TokenRequest::client_credentials(
            &credential.id,
            &credential.secret,
        ))
        .expect("a token request");
        let answer = request(self.addr(), "POST", ostore::api::TOKEN_PATH, body.into());
        async move {
            let r = answer.await;
            assert_eq!(r.status, 200, "{}", r.text());
            r.json::<TokenResponse>().access_token
        }
    }
}

impl Serves for TestHost {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Serves for OstoreProcess {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON of type `T`.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// Sends one HTTP/1.1 request on a new connection.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> impl Future<Output = Response> + Send + use<> {
    request_with(addr, method, path, &[], body)
}

/// Sends one HTTP/1.1 request with extra headers on a new connection.
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> impl Future<Output = Response> + Send + use<> {
    let answer = try_request_with(addr, method, path, headers, body);
    async move { answer.await.unwrap_or_else(|e| panic!("{e}")) }
}

/// Like [`request_with`], but a connection that fails (a host that is
/// down, or dies before it answers) is an `Err` saying where it failed,
/// not a panic: for tests that kill the host under load.
pub fn try_request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> impl Future<Output = Result<Response, String>> + Send + use<> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    // The server's address as Host, unless the test gives one.
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        req = req.header("host", addr.to_string());
    }
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body)).expect("a valid request");
    async move {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to ostore: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("sending the request: {e}"))?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the body: {e}"))?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("reading a directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Whether `needle` occurs in any file under `dir`.
pub fn on_disk(dir: &Path, needle: &[u8]) -> Option<PathBuf> {
    files_under(dir).into_iter().find(|file| {
        let bytes = std::fs::read(file).expect("reading a file");
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

/// A credential for application `name`.
pub fn app(name: &str) -> Principal {
    Principal::Application(name.into())
}
