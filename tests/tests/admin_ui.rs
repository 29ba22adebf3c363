//! The admin UI in a real browser. This test starts a host with two
//! applications and three credentials, then runs the browser tests in
//! `tests/ui/admin.test.mjs` (Debian's Chromium driven by playwright-core,
//! under `node --test`) against it. What each browser test checks is written
//! there; this file fails if any of them fails.
//!
//! Needs `node` and Debian's `chromium` (`/usr/bin/chromium`, or `$CHROMIUM`);
//! `.ci/run` installs it. playwright-core is installed from
//! `tests/ui/package-lock.json` on first use. Set `OSTORE_SCREENSHOTS=dir`
//! (relative to the repository's root) to keep screenshots of the main
//! screens; those in `docs/admin/` come from here.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ostore::auth::{Principal, Scope};
use ostore_tests::{Setup, app, host_log, repo_root};

/// The browser tests take about a minute; this bounds a hung browser.
const BROWSER_TESTS_TIMEOUT: Duration = Duration::from_secs(600);

fn chromium() -> PathBuf {
    let path =
        std::env::var_os("CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    assert!(
        path.is_file(),
        "the admin UI tests need Chromium at {}: install Debian's package \
         (apt-get install chromium), or set CHROMIUM to its path",
        path.display()
    );
    path
}

/// Installs playwright-core into `tests/ui/node_modules` from the lock file
/// unless it is there.
fn install_playwright(ui: &Path) {
    if ui
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(ui)
        .status()
        .expect("running npm (the admin UI tests need Node.js 20 and npm)");
    assert!(status.success(), "npm ci in {} failed", ui.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_passes_its_browser_tests() {
    let chromium = chromium();
    let ui = repo_root().join("tests/ui");
    install_playwright(&ui);

    let setup = Setup::new()
        .app("store-flow", &[("/store/...", "flow", "store-flow")])
        .app("orders", &[("/orders/...", "flow", "store-flow")]);
    let admin = setup.credential(Principal::Admin, &[]);
    let orders = setup.credential(app("orders"), &[]);
    let reader = setup.credential(
        app("store-flow"),
        &[Scope::ReadStore, Scope::ReadStoreMetrics],
    );
    // The browser waits for keys to expire in real time.
    let host = setup
        .start_with(|c| c.clock = ostore::clock::system())
        .await;

    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", "admin.test.mjs"])
        .current_dir(&ui)
        .env("OSTORE_URL", format!("http://{}", host.addr))
        .env("CHROMIUM", &chromium)
        .env("OSTORE_ADMIN_ID", &admin.id)
        .env("OSTORE_ADMIN_SECRET", &admin.secret)
        .env("OSTORE_APP_ID", &orders.id)
        .env("OSTORE_APP_SECRET", &orders.secret)
        .env("OSTORE_READER_ID", &reader.id)
        .env("OSTORE_READER_SECRET", &reader.secret)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(shots) = std::env::var_os("OSTORE_SCREENSHOTS") {
        // A relative path is taken from the repository's root.
        let shots = repo_root().join(shots);
        node.env("OSTORE_SCREENSHOTS", shots);
    }
    let mut child = node
        .spawn()
        .expect("running node (the admin UI tests need Node.js 20)");
    let readers = [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ];
    let deadline = Instant::now() + BROWSER_TESTS_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let [out, err] = readers.map(|r| r.join().unwrap());
    let report = format!("{out}{err}");
    assert!(
        Instant::now() <= deadline,
        "the browser tests did not finish within {BROWSER_TESTS_TIMEOUT:?}:\n{report}"
    );
    assert!(
        status.success(),
        "the browser tests failed ({status}):\n{report}\nostore's log:\n{}",
        host_log()
    );
    println!("{report}");
}

/// Reads a child's output to its end on a thread of its own.
fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}
