//! The admin UI in a real browser. One test starts a host with two
//! applications and three credentials, then runs the browser tests in
//! `tests/ui/admin.test.mjs` (Debian's Chromium driven by playwright-core,
//! under `node --test`) against it; another runs `tests/ui/origin.test.mjs`
//! against hosts serving a hostile page. What each browser test checks is
//! written there; this file fails if any of them fails.
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
use ostore::host::AdminUi;
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

    let mut env = vec![
        ("OSTORE_URL", format!("http://{}", host.admin_addr)),
        ("OSTORE_APPS_URL", format!("http://{}", host.addr)),
        ("OSTORE_ADMIN_ID", admin.id),
        ("OSTORE_ADMIN_SECRET", admin.secret),
        ("OSTORE_APP_ID", orders.id),
        ("OSTORE_APP_SECRET", orders.secret),
        ("OSTORE_READER_ID", reader.id),
        ("OSTORE_READER_SECRET", reader.secret),
    ];
    if let Some(shots) = std::env::var_os("OSTORE_SCREENSHOTS") {
        // A relative path is taken from the repository's root.
        let shots = repo_root().join(shots);
        env.push(("OSTORE_SCREENSHOTS", shots.display().to_string()));
    }
    run_browser_tests("admin.test.mjs", &env).await;
}

/// An application's page cannot take over the admin UI: not on the UI's
/// own origin (the default), and not on the applications' origin when an
/// operator puts the UI there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_page_cannot_take_over_the_admin_ui() {
    let setup = Setup::new().app("pages", &[("/...", "pages", "pages")]);
    let own = setup.start().await;
    let shared = Setup::new()
        .app("pages", &[("/...", "pages", "pages")])
        .start_with(|c| c.admin_ui = AdminUi::AppListener)
        .await;
    assert_eq!(shared.admin_addr, shared.addr);
    run_browser_tests(
        "origin.test.mjs",
        &[
            ("OSTORE_URL", format!("http://{}", own.admin_addr)),
            ("OSTORE_APPS_URL", format!("http://{}", own.addr)),
            ("OSTORE_SHARED_URL", format!("http://{}", shared.addr)),
        ],
    )
    .await;
}

/// Runs `file` of `tests/ui` under `node --test` with `env`, in Chromium;
/// fails if any of its tests fails, and prints its report.
async fn run_browser_tests(file: &str, env: &[(&str, String)]) {
    let chromium = chromium();
    let ui = repo_root().join("tests/ui");
    install_playwright(&ui);
    let mut node = Command::new("node");
    node.args(["--test", "--test-reporter=spec", file])
        .current_dir(&ui)
        .env("CHROMIUM", &chromium)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
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
        "the browser tests of {file} did not finish within {BROWSER_TESTS_TIMEOUT:?}:\n{report}"
    );
    assert!(
        status.success(),
        "the browser tests of {file} failed ({status}):\n{report}\nostore's log:\n{}",
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
