//! Unchanged Spin apps on ostore: spin-sdk 7 (async, WASIp3) and spin-sdk
//! 5.2 (sync, WASIp2) guests share data through labels, which are
//! partitions of the object store, with everything that implies.

use std::collections::HashMap;
use std::path::Path;

use ostore::auth::Principal;
use ostore::manifest::Manifest;
use ostore::spin::RuntimeConfig;
use ostore::spin::variables::VariableSource;
use ostore_tests::{Serves, Setup, files_under, guest, host_log, run_ostore};

/// One application: both Spin guests and the tutorial flow, granted the
/// `default` and `tutorial` labels (the latter maps to the tutorial flow's
/// partition through the runtime config).
fn manifest(dir: &Path, name: &str, labels: &str) -> std::path::PathBuf {
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "{name}"
[[trigger.http]]
route = "/v3/..."
component = "v3"
[[trigger.http]]
route = "/v2/..."
component = "v2"
[[trigger.http]]
route = "/store/..."
component = "flow"
[component.v3]
source = {v3:?}
key_value_stores = [{labels}]
files = [{{ source = "static", destination = "/static" }}]
[component.v2]
source = {v2:?}
key_value_stores = [{labels}]
files = ["static", "*.md"]
[component.flow]
source = {flow:?}
"#,
        v3 = guest("spin-kv-v3").display().to_string(),
        v2 = guest("spin-kv-v2").display().to_string(),
        flow = guest("store-flow").display().to_string(),
    );
    std::fs::create_dir_all(dir.join("static")).unwrap();
    std::fs::write(dir.join("static/hello.txt"), "hello from a file").unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn runtime_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("runtime-config.toml");
    std::fs::write(
        &path,
        "[key_value_store.tutorial]\ntype = \"ostore\"\npartition = \"ObjectStoreTutorial\"\n",
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_guests_pass_their_own_checks_and_share_data_with_every_guest() {
    let setup = Setup::new();
    let app = manifest(setup.path(), "spin-app", r#""default", "tutorial""#);
    let config = RuntimeConfig::load(&runtime_config(setup.path())).unwrap();
    let setup = setup.manifest(app.clone());
    let data = setup.data.clone();
    let host = setup.start_with(|c| c.runtime_config = config).await;

    for base in ["/v3", "/v2"] {
        let r = host.get(&format!("{base}/selftest")).await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{base}");
        // `files` mounts directories read-only, and nothing else.
        let r = host.get(&format!("{base}/file/static/hello.txt")).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello from a file"),
            "{base}"
        );
        assert_eq!(
            host.get(&format!("{base}/file/etc/passwd")).await.status,
            404
        );
    }
    let warnings = Manifest::load(&app).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("component.v2.files: \"*.md\" is not a directory")),
        "{warnings:?}"
    );

    // Written by spin-sdk 7, read by spin-sdk 5.2, on the default label.
    assert_eq!(
        host.request("PUT", "/v3/kv/shared", "from v3").await.status,
        200
    );
    assert_eq!(host.get("/v2/kv/shared").await.text(), "from v3");
    assert_eq!(host.get("/v2/exists/shared").await.text(), "true");
    assert_eq!(
        host.request("DELETE", "/v2/kv/shared", "").await.status,
        200
    );
    assert_eq!(host.get("/v3/kv/shared").await.status, 404);
    assert_eq!(host.get("/v3/exists/shared").await.text(), "false");

    // The tutorial flow (a wit-bindgen guest) and both Spin guests see one
    // partition through the `tutorial` label.
    let saved = r#"{"key": "TestKey01", "value": "from the flow"}"#;
    assert_eq!(host.request("POST", "/store", saved).await.status, 200);
    assert_eq!(
        host.get("/v3/kv/TestKey01?store=tutorial").await.text(),
        "from the flow"
    );
    assert_eq!(
        host.request("PUT", "/v2/kv/spin-key?store=tutorial", "from v2")
            .await
            .status,
        200
    );
    assert_eq!(host.get("/store/spin-key").await.text(), "from v2");
    let keys = host.get("/v3/keys?store=tutorial").await.text();
    assert_eq!(keys, "TestKey01\nspin-key\n");

    // JSON helpers round-trip.
    let doc = r#"{"name":"widget","count":3}"#;
    assert_eq!(host.request("PUT", "/v3/json/doc", doc).await.status, 200);
    let back: serde_json::Value =
        serde_json::from_slice(&host.get("/v2/json/doc").await.body).unwrap();
    assert_eq!(back, serde_json::json!({"name": "widget", "count": 3}));

    // Spin requests count in the statistics like any other: one each.
    let admin = setup.credential(Principal::Admin, &[]);
    let auth = format!("Bearer {}", host.token(&admin).await);
    let requests = || async {
        let r = host
            .request_with("GET", "/metrics", &[("authorization", &auth)], "")
            .await;
        let line = r
            .text()
            .lines()
            .find(|l| l.starts_with("ostore_requests_total{") && l.contains("\"spin-app\""))
            .unwrap()
            .to_string();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    let before = requests().await;
    for base in ["/v3", "/v2", "/v2"] {
        assert_eq!(host.get(&format!("{base}/exists/doc")).await.text(), "true");
    }
    assert_eq!(requests().await - before, 3);
    host.stop().await;

    // Nothing of it is plaintext at rest.
    for needle in ["from v3", "from v2", "spin-key", "widget", "spin-app"] {
        for file in files_under(&data) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle:?} in {}",
                file.display()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_are_checked_at_load_and_at_open_and_apps_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    // A label that is neither `default` nor configured stops the start.
    let bad = manifest(&dir.path().join("bad"), "bad-app", r#""default", "nope""#);
    let run = run_ostore(
        &[
            "up",
            "-f",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("`v3`") && run.stderr.contains("\"nope\""),
        "{}",
        run.stderr
    );

    // Granted only `default`: opening `tutorial` (configured, but not
    // granted to these components) is access-denied inside the guest.
    let app = manifest(dir.path(), "one-app", r#""default""#);
    let config = runtime_config(dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let other = other_dir.join("other.toml");
    std::fs::write(
        &other,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"other-app\"\n[[trigger.http]]\nroute = \"/other/...\"\ncomponent = \"v2\"\n[component.v2]\nsource = {:?}\nkey_value_stores = [\"default\"]\n",
            guest("spin-kv-v2").display().to_string()
        ),
    )
    .unwrap();
    let config = RuntimeConfig::load(&config).unwrap();
    let setup = Setup::new().manifest(app).manifest(other);
    let host = setup.start_with(|c| c.runtime_config = config).await;
    for base in ["/v3", "/v2"] {
        let r = host.get(&format!("{base}/kv/x?store=tutorial")).await;
        assert_eq!(r.status, 403, "{base}: {}", r.text());
    }
    // Another application does not see this one's keys.
    assert_eq!(
        host.request("PUT", "/v2/kv/mine", "secret").await.status,
        200
    );
    assert_eq!(host.get("/other/kv/mine").await.status, 404);
    assert_eq!(host.get("/other/keys").await.text(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_keyvalue_counts_exactly_and_reports_cas_conflicts() {
    let setup = Setup::new();
    let manifest = setup.path().join("wasi-kv.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"wasi-kv-app\"\n[[trigger.http]]\nroute = \"/wasi-kv/...\"\ncomponent = \"kv\"\n[component.kv]\nsource = {:?}\nkey_value_stores = [\"default\"]\n",
            guest("wasi-kv").display().to_string()
        ),
    )
    .unwrap();
    let setup = setup.manifest(manifest);
    let host = setup.start().await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let addr = host.addr;
            tokio::spawn(async move {
                ostore_tests::request(addr, "POST", "/wasi-kv/increment/hits", Default::default())
                    .await
            })
        })
        .collect();
    let mut seen = Vec::new();
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        seen.push(r.text().parse::<i64>().unwrap());
    }
    seen.sort();
    assert_eq!(
        seen,
        (1..=64).collect::<Vec<_>>(),
        "every increment saw its own count"
    );
    assert_eq!(
        host.request("POST", "/wasi-kv/increment/hits", "")
            .await
            .text(),
        "65"
    );

    assert_eq!(host.get("/wasi-kv/cas/hits").await.text(), "swapped");
    let r = host.get("/wasi-kv/cas-conflict/hits").await;
    assert_eq!(r.text(), "conflict changed by someone else");
    assert_eq!(
        host.request("PUT", "/wasi-kv/batch", "").await.text(),
        "a=1 b=2 c= deleted=true"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_come_from_the_manifest_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("vars.toml");
    let component = |id: &str, wasm: &str| {
        format!(
            "[component.{id}]\nsource = {:?}\n[component.{id}.variables]\nmessage = \"{{{{ greeting }}}}, world\"\ntoken = \"t-{{{{ api_token }}}}\"\n",
            guest(wasm).display().to_string()
        )
    };
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"vars-app\"\n\
             [variables]\ngreeting = {{ default = \"hello\" }}\napi_token = {{ required = true, secret = true }}\n\
             [[trigger.http]]\nroute = \"/v3/...\"\ncomponent = \"v3\"\n\
             [[trigger.http]]\nroute = \"/v2/...\"\ncomponent = \"v2\"\n{}{}",
            component("v3", "spin-kv-v3"),
            component("v2", "spin-kv-v2")
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = [
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];

    // A required variable without a value stops the start, naming it.
    let mut up = vec!["up", "--listen", "127.0.0.1:0"];
    up.extend(args);
    let run = run_ostore(&up, &[]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("SPIN_VARIABLE_API_TOKEN"),
        "{}",
        run.stderr
    );

    let given = HashMap::from([("SPIN_VARIABLE_API_TOKEN".to_string(), "abc123".to_string())]);
    let setup = Setup::new().manifest(manifest.clone());
    let host = setup
        .start_with(|c| c.variables = VariableSource::Given(given))
        .await;
    for base in ["/v3", "/v2"] {
        let r = host.get(&format!("{base}/var/message")).await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello, world"),
            "{base}"
        );
        assert_eq!(
            host.get(&format!("{base}/var/token")).await.text(),
            "t-abc123"
        );
        assert_eq!(
            host.get(&format!("{base}/var/greeting")).await.status,
            404,
            "only the component's own names"
        );
        assert_eq!(host.get(&format!("{base}/var/Not-Valid")).await.status, 400);
    }
    assert!(!host_log().contains("abc123"), "the secret is not logged");
}

/// The request a Spin component gets: for `GET /base/x/y/rest?k=v` with
/// `Host: example.com` to route `/base/:a/:b/...`, exactly Spin's `spin-*`
/// headers with Spin's values, whatever `spin-*` headers the client sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spin_component_gets_the_request_as_spin_gives_it() {
    let host = Setup::new()
        .app("echo", &[("/base/:a/:b/...", "echo", "spin-echo")])
        .start()
        .await;
    let forged = [
        ("host", "example.com"),
        ("spin-path-match-a", "admin"),
        ("spin-full-url", "http://elsewhere/"),
        ("Spin-Matched-Route", "/forged/..."),
        ("spin-client-addr", "10.0.0.1:1"),
        ("x-kept", "yes"),
    ];
    let answer = host
        .request_with("GET", "/base/x/y/rest?k=v", &forged, Vec::new())
        .await;
    assert_eq!(answer.status, 200);
    let text = answer.text();
    let mut spin: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| name.to_ascii_lowercase().starts_with("spin-"))
        .collect();
    spin.sort();
    let client = spin
        .iter()
        .find(|(name, _)| *name == "spin-client-addr")
        .map(|(_, addr)| addr.to_string())
        .unwrap_or_default();
    assert!(client.starts_with("127.0.0.1:"), "{text}");
    let mut expected = vec![
        ("spin-base-path", "/"),
        ("spin-client-addr", client.as_str()),
        ("spin-component-route", "/base/:a/:b"),
        ("spin-full-url", "http://example.com/base/x/y/rest?k=v"),
        ("spin-matched-route", "/base/:a/:b/..."),
        ("spin-path-info", "/rest"),
        ("spin-path-match-a", "x"),
        ("spin-path-match-b", "y"),
        ("spin-raw-component-route", "/base/:a/:b/..."),
    ];
    expected.sort();
    assert_eq!(spin, expected, "{text}");
    // The URI as the component sees it: the path and query as sent, under
    // the Host the client named.
    let uri = text.lines().next().unwrap_or_default();
    assert_eq!(uri, "uri: http://example.com/base/x/y/rest?k=v", "{text}");
    assert!(text.contains("\nx-kept: yes\n"), "{text}");
    // A path the route does not serve is not this component's.
    assert_eq!(host.get("/base/x").await.status, 404);
}
