//! Helpers for the end-to-end tests: build the guests, start `ostore up` on
//! a free loopback port, and talk HTTP to it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

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

/// A running `ostore up`, stopped (killed) on drop.
pub struct Host {
    child: Child,
    pub addr: SocketAddr,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// How long a host may take to start: debug builds of wasmtime compile
/// components slowly.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The path of the `ostore` binary under test. Cargo builds this crate's
/// binaries before its integration tests, into the directory above the
/// test executables (`target/<profile>/deps/`).
pub fn ostore_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps")
        .join("ostore-under-test");
    assert!(bin.is_file(), "{} is missing", bin.display());
    bin
}

impl Host {
    /// Starts `ostore up` with `args` (manifests, data dir, ...) on a free
    /// loopback port and waits until it serves.
    pub fn start(args: &[&str]) -> Host {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Host {
        let mut cmd = Command::new(ostore_bin());
        cmd.arg("up").args(args).args(["--listen", "127.0.0.1:0"]);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("OSTORE_MASTER_KEY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting ostore");
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let err_pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                eprintln!("[ostore] {line}");
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let out_pipe = child.stdout.take().expect("piped stdout");
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let out_sink = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                out_sink.lock().unwrap().push_str(&format!("{line}\n"));
                let served = line
                    .strip_prefix("Serving http://")
                    .or_else(|| line.strip_prefix("Serving https://"));
                if let Some(addr) = served {
                    let _ = tx.send(addr.trim().to_string());
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(100)) {
                break addr
                    .parse()
                    .expect("a socket address after 'Serving http://'");
            }
            if let Some(status) = child.try_wait().expect("polling ostore") {
                panic!(
                    "ostore exited ({status}) before serving:\n{}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "ostore did not start within {START_TIMEOUT:?}"
            );
        };
        Host {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// What the host wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The first line of standard output starting with `prefix`, waiting
    /// up to ten seconds for it.
    pub fn stdout_line(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = self.stdout.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.trim_start().starts_with(prefix)) {
                return line.trim().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "ostore printed no line starting with {prefix:?}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("polling ostore").is_none()
    }

    /// Stops the host with SIGKILL: no chance to flush or close anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the host with SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("waiting for ostore");
        assert!(status.success(), "ostore exited with {status}");
    }

    /// Sends one request and returns the status and body.
    pub async fn request(&self, method: &str, path: &str, body: impl Into<Bytes>) -> Response {
        request(self.addr, method, path, body.into()).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path, Bytes::new()).await
    }

    /// Sends one request with extra headers (such as `authorization`).
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        request_with(self.addr, method, path, headers, body.into()).await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
}

/// Sends one HTTP/1.1 request on a new connection.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Bytes) -> Response {
    request_with(addr, method, path, &[], body).await
}

/// Sends one HTTP/1.1 request with extra headers on a new connection.
pub async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Response {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connecting to ostore");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("HTTP handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body)).expect("a valid request");
    let res = sender.send_request(req).await.expect("sending the request");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .expect("reading the body")
        .to_bytes()
        .to_vec();
    Response {
        status,
        headers,
        body,
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

/// What a finished `ostore` run printed.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    /// Standard output, as printed (it may be binary).
    pub raw_stdout: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ostore` with `args` and `env` to completion (at most two minutes),
/// for commands that are expected to exit, such as failing starts.
pub fn run_ostore(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut cmd = Command::new(ostore_bin());
    cmd.args(args).env_remove("OSTORE_MASTER_KEY");
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("starting ostore");
    let deadline = Instant::now() + START_TIMEOUT;
    while child.try_wait().expect("polling ostore").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ostore {args:?} did not exit within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child
        .wait_with_output()
        .expect("collecting ostore's output");
    Finished {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        raw_stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Makes a credential with `ostore credentials create` for the data in
/// `data_dir`; `who` is `["--app", NAME]` or `["--admin"]`, `scopes` empty
/// for all. Returns the client id and secret.
pub fn create_credential(data_dir: &Path, who: &[&str], scopes: &[&str]) -> (String, String) {
    let mut args = vec![
        "credentials",
        "create",
        "--data-dir",
        data_dir.to_str().expect("UTF-8 path"),
    ];
    args.extend(who);
    for scope in scopes {
        args.extend(["--scope", scope]);
    }
    let run = run_ostore(&args, &[]);
    assert!(run.success, "{}", run.stderr);
    let field = |name: &str| {
        run.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {}", run.stdout))
    };
    (field("client_id:"), field("client_secret:"))
}

impl Host {
    /// Exchanges a credential for a bearer token at the token endpoint.
    pub async fn token(&self, (id, secret): &(String, String)) -> String {
        let body = format!(
            r#"{{"client_id":"{id}","client_secret":"{secret}","grant_type":"client_credentials"}}"#
        );
        let r = self
            .request("POST", "/accounts/api/v2/oauth2/token", body)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        let text = r.text();
        // {"access_token":"...","token_type":"bearer","expires_in":N}
        let start = text.find("\"access_token\":\"").expect("an access_token") + 16;
        let end = start + text[start..].find('"').expect("the token's end");
        text[start..end].to_string()
    }
}
