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

/// One application of spin-chain guests, each allowed to reach its own
/// application differently: `chain` at `/chain/...` (self requests, and
/// service chaining to `echo`), `open` at `/open/...` (no outbound rules),
/// `wild` at `/wild/...` (chaining to any component), `chain3` at
/// `/chain3/...` (spin-chain-v3, on spin-sdk 7: self requests and chaining
/// to `echo` over WASIp3); `echo`, a private spin-echo; and `misbehave`
/// at `/misbehave/...`, which can spin forever. A second application serves
/// `/other`.
fn chain_setup() -> Setup {
    let setup = Setup::new();
    let chain = guest("spin-chain").display().to_string();
    let text = format!(
        r#"spin_manifest_version = 2
[application]
name = "chain-app"
[[trigger.http]]
route = "/chain/..."
component = "chain"
[[trigger.http]]
route = "/open/..."
component = "open"
[[trigger.http]]
route = "/wild/..."
component = "wild"
[[trigger.http]]
route = "/chain3/..."
component = "chain3"
[[trigger.http]]
route = "/misbehave/..."
component = "misbehave"
[[trigger.http]]
route = {{ private = true }}
component = "echo"
[component.chain]
source = {chain:?}
environment = {{ GREETING = "hello" }}
key_value_stores = ["default"]
allowed_outbound_hosts = ["http://self", "http://echo.spin.internal"]
[component.open]
source = {chain:?}
[component.wild]
source = {chain:?}
allowed_outbound_hosts = ["https://*.spin.internal"]
[component.chain3]
source = {chain3:?}
allowed_outbound_hosts = ["http://self", "http://echo.spin.internal"]
[component.misbehave]
source = {misbehave:?}
[component.echo]
source = {echo:?}
"#,
        echo = guest("spin-echo").display().to_string(),
        chain3 = guest("spin-chain-v3").display().to_string(),
        misbehave = guest("misbehave").display().to_string(),
    );
    let path = setup.path().join("chain-app.toml");
    std::fs::write(&path, text).unwrap();
    setup
        .manifest(path)
        .app("other-app", &[("/other", "hello", "hello")])
}

/// `/<base>/call?url=<url>`: what the guest at `base` got from `url`.
async fn call(host: &impl Serves, base: &str, url: &str) -> ostore_tests::Response {
    let mut encoded = String::new();
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    host.get(&format!("/{base}/call?url={encoded}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_component_answers_service_chaining_and_no_client() {
    let host = chain_setup().start().await;

    // From outside, a private endpoint is no route at all.
    for path in ["/", "/x/y", "/echo", "/echo/x"] {
        let r = host.get(path).await;
        assert_eq!(
            (r.status, r.text()),
            (404, format!("no route serves {path}")),
            "{path}"
        );
    }

    // Through service chaining it answers, with Spin's headers for a
    // chained request, whatever `spin-` headers the caller set.
    let r = call(&host, "chain", "http://echo.spin.internal/x/y?q=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(
        text.lines().next(),
        Some("uri: http://echo.spin.internal/x/y?q=1"),
        "{text}"
    );
    let mut spin: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|line| line.split_once(": ").or_else(|| line.split_once(':')))
        .filter(|(name, _)| name.starts_with("spin-"))
        .collect();
    spin.sort();
    assert_eq!(
        spin,
        [
            ("spin-base-path", "/"),
            ("spin-client-addr", "0.0.0.0:0"),
            ("spin-component-route", ""),
            ("spin-full-url", "http://localhost/x/y?q=1"),
            ("spin-matched-route", "/..."),
            ("spin-path-info", "/x/y"),
            ("spin-raw-component-route", "/..."),
        ],
        "{text}"
    );
    assert!(!text.contains("\nhost: "), "Spin drops the Host: {text}");

    // `https://*.spin.internal` allows chaining to any component, over
    // either scheme; a component that does not exist is not found.
    let r = call(&host, "wild", "http://echo.spin.internal/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(&host, "wild", "http://nope.spin.internal/").await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("DestinationNotFound"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_requests_reach_the_applications_own_routes_when_allowed() {
    let host = chain_setup().start().await;

    // A path alone (as Spin SDKs send it), `self.alt` and `self`.
    for url in [
        "/chain/env/GREETING",
        "http://self.alt/chain/env/GREETING",
        "http://self/chain/env/GREETING",
    ] {
        let r = call(&host, "chain", url).await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{url}");
    }
    // Only this application's routes: not another application's, not a
    // private endpoint (it has no route).
    for path in ["/other", "/x/y"] {
        let r = call(&host, "chain", path).await;
        assert_eq!(
            (r.status, r.text()),
            (404, format!("no route serves {path}")),
            "{path}"
        );
    }

    // Anything not in `allowed_outbound_hosts` is denied with Spin's error.
    for (base, url) in [
        ("open", "/chain/env/GREETING"),
        ("open", "http://self.alt/chain/env/GREETING"),
        ("open", "http://echo.spin.internal/"),
        ("chain", "http://wild.spin.internal/"),
        ("wild", "http://self/chain/env/GREETING"),
    ] {
        let r = call(&host, base, url).await;
        assert_eq!(r.status, 502, "{base} {url}: {}", r.text());
        assert!(
            r.text().contains("HttpRequestDenied"),
            "{base} {url}: {}",
            r.text()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasip3_spin_component_chains_and_calls_itself_as_a_wasip2_one_does() {
    let host = chain_setup().start().await;

    // Service chaining to the private component, with Spin's headers.
    let r = call(&host, "chain3", "http://echo.spin.internal/x/y?q=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert_eq!(
        text.lines().next(),
        Some("uri: http://echo.spin.internal/x/y?q=1"),
        "{text}"
    );
    assert!(text.contains("spin-path-info: /x/y"), "{text}");
    // Self requests reach the application's routes. (spin-sdk 7 itself
    // refuses a URL that is only a path, `HttpRequestUriInvalid`, before the
    // request reaches the host.)
    let r = call(&host, "chain3", "http://self/chain/env/GREETING").await;
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // What `allowed_outbound_hosts` does not list is denied, with Spin's
    // error, over WASIp3 as over WASIp2.
    for url in [
        "http://wild.spin.internal/",
        "http://self.alt.example/",
        "http://127.0.0.1:9/",
    ] {
        let r = call(&host, "chain3", url).await;
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        assert!(
            r.text().contains("HttpRequestDenied"),
            "{url}: {}",
            r.text()
        );
    }
    // A WASIp3 chain that calls itself forever stops at the same depth.
    let r = host.get("/chain3/recurse").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().starts_with(&"hop ".repeat(11)) && r.text().contains("LoopDetected"),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chained_request_ends_at_the_deadline_of_the_request_that_set_it_off() {
    let setup = chain_setup();
    let host = setup
        .start_with(|c| {
            c.sandbox = ostore::host::Sandbox::New(ostore::runtime::SandboxConfig {
                request_timeout: std::time::Duration::from_secs(3),
                ..ostore::runtime::SandboxConfig::default()
            })
        })
        .await;
    let addr = host.addr;
    // `chain` calls a component that spins forever, through a self request.
    let spinning = tokio::spawn(async move {
        ostore_tests::request(
            addr,
            "GET",
            "/chain/call?url=%2Fmisbehave%2Floop",
            Default::default(),
        )
        .await
    });
    // Meanwhile the application answers as ever.
    for _ in 0..5 {
        let r = host.get("/chain/env/GREETING").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    }
    // The client's request ends at its deadline with a 5xx: the chained
    // request could not outlive it.
    let r = tokio::time::timeout(std::time::Duration::from_secs(60), spinning)
        .await
        .expect("the chained request ends")
        .unwrap();
    assert!((500..600).contains(&r.status), "{}: {}", r.status, r.text());
    // Both were stopped there: the callee and the caller waiting on it.
    let log = host_log();
    for component in ["misbehave", "chain"] {
        let line = format!("guest interrupted at its deadline component={component}");
        assert!(log.contains(&line), "{line} not in {log}");
    }
    assert_eq!(host.get("/misbehave/ok").await.status, 200);
    assert!(host.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_calls_itself_forever_is_stopped_and_the_host_serves_on() {
    let host = chain_setup().start().await;
    let addr = host.addr;
    let endless = tokio::spawn(async move {
        ostore_tests::request(addr, "GET", "/chain/recurse", Default::default()).await
    });
    // Meanwhile, the application and the host answer as ever.
    for _ in 0..8 {
        let r = host.get("/chain/env/GREETING").await;
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    }
    // The client's request and ten local hops ran, each adding its `hop`;
    // the last one's request, an eleventh hop, was refused.
    let r = endless.await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("{}error: Http(ErrorCode::LoopDetected)", "hop ".repeat(11))
    );
    assert!(host_log().contains("local requests deep already"));
    assert_eq!(host.get("/chain/env/GREETING").await.text(), "hello");
    assert_eq!(host.get("/other").await.text(), "hello, world");
}

/// One request on a raw connection: the response's head and body as sent.
async fn raw_exchange(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the host closes the connection")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
    (head.to_string(), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bodiless_answer_carries_content_length_zero() {
    let host = chain_setup().start().await;
    let (head, body) = raw_exchange(host.addr, "/chain/empty").await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("\r\ncontent-length: 0"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert_eq!(body, "");
    // Statuses without a body carry no length at all.
    let (head, _) = raw_exchange(host.addr, "/chain/status/204").await;
    assert!(head.starts_with("http/1.1 204"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    // A body is streamed as before.
    let (head, body) = raw_exchange(host.addr, "/chain/env/GREETING").await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert_eq!(body, "5\r\nhello\r\n0\r\n\r\n");
}
