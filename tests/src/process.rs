//! The `ostore` binary under test, for what only it does: flags, signals,
//! exit codes and messages.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Credential;

/// A running `ostore up`, stopped (killed) on drop.
pub struct OstoreProcess {
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

impl OstoreProcess {
    /// Starts `ostore up` with `args` (manifests, data dir, ...) on a free
    /// loopback port and waits until it serves.
    pub fn start(args: &[&str]) -> OstoreProcess {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> OstoreProcess {
        Self::start_under(&[], args, env)
    }

    /// Starts `ostore up` through `wrapper` (a command that runs the rest of
    /// its arguments, such as `prlimit --nofile=128:128`), with `env` set.
    pub fn start_under(wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> OstoreProcess {
        let cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(ostore_bin());
                cmd
            }
            None => Command::new(ostore_bin()),
        };
        Self::spawn(cmd, args, env)
    }

    /// Starts `ostore up` from the binary `bin` (another build of ostore,
    /// for benches that compare two builds).
    pub fn start_binary(bin: &Path, args: &[&str]) -> OstoreProcess {
        Self::spawn(Command::new(bin), args, &[])
    }

    /// Starts `ostore up` from the binary `bin` with extra environment
    /// variables.
    pub fn start_binary_with_env(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> OstoreProcess {
        Self::spawn(Command::new(bin), args, env)
    }

    fn spawn(mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> OstoreProcess {
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
        OstoreProcess {
            child,
            addr,
            stdout,
            stderr,
        }
    }

    /// The process id (of the wrapper, if started through one).
    pub fn pid(&self) -> u32 {
        self.child.id()
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
}

impl Drop for OstoreProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
pub fn create_credential(data_dir: &Path, who: &[&str], scopes: &[&str]) -> Credential {
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
    Credential {
        id: field("client_id:"),
        secret: field("client_secret:"),
    }
}
