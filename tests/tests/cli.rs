//! The command line: help, and one clear line for each way a start fails.

use ostore_tests::{OstoreProcess, Serves, guest, run_ostore, write_manifest};

#[test]
fn every_command_has_help() {
    let top = run_ostore(&["--help"], &[]);
    assert!(top.success && top.stdout.contains("up"), "{}", top.stdout);
    let up = run_ostore(&["up", "--help"], &[]);
    assert!(up.success);
    for flag in [
        "--from",
        "--listen",
        "--build",
        "--data-dir",
        "--key-file",
        "--max-value-bytes",
        "--env",
        "--key-value",
        "--state-dir",
    ] {
        assert!(
            up.stdout.contains(flag),
            "`up --help` does not mention {flag}"
        );
    }
}

fn error_line(args: &[&str]) -> String {
    let run = run_ostore(args, &[]);
    assert!(!run.success, "{args:?} succeeded");
    let last = run.stderr.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: "), "{:?}", run.stderr);
    last
}

#[test]
fn a_missing_or_malformed_manifest_or_component_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let line = error_line(&["up", "-f", missing.to_str().unwrap()]);
    assert!(
        line.contains("cannot read manifest") && line.contains("nope.toml"),
        "{line}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "spin_manifest_version = 2\n[application\n").unwrap();
    let line = error_line(&["up", "-f", bad.to_str().unwrap()]);
    assert!(line.contains("malformed manifest"), "{line}");

    let absent_wasm = dir.path().join("absent.wasm");
    let manifest = write_manifest(dir.path(), "ghost", &[("/x", "ghost", &absent_wasm)]);
    let line = error_line(&[
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(
        line.contains("absent.wasm") && line.contains("does not exist"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "hello", &[("/hello", "hello", &guest("hello"))]);
    let host = OstoreProcess::start(&["-f", manifest.to_str().unwrap()]);
    let taken = host.addr.to_string();
    let line = error_line(&["up", "-f", manifest.to_str().unwrap(), "--listen", &taken]);
    assert!(
        line.contains("cannot listen on") && line.contains(&taken),
        "{line}"
    );
    assert_eq!(host.get("/hello").await.text(), "hello, world");
}

#[test]
fn unsupported_manifest_fields_are_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"w\"\n[[trigger.http]]\nroute = \"/x\"\ncomponent = \"c\"\n\
             [component.c]\nsource = {:?}\nfancy_feature = true\n",
            dir.path().join("absent.wasm").display().to_string()
        ),
    )
    .unwrap();
    // The start fails later (the component file is absent), after the
    // warning; on a free port and in the temporary directory.
    let data = dir.path().join("data");
    let args = [
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let run = run_ostore(&args, &[]);
    assert!(
        run.stderr.contains("warning:") && run.stderr.contains("component.c.fancy_feature"),
        "{}",
        run.stderr
    );
}

/// Waits until `host` has printed `count` warnings about routes.
fn route_warnings(host: &OstoreProcess, count: usize) -> String {
    // Printed before the announcement; stderr is read on a thread of its own.
    let mut stderr = host.stderr();
    for _ in 0..100 {
        if stderr.matches("warning: route").count() >= count {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        stderr = host.stderr();
    }
    stderr
}

/// `ostore up` with `extra` flags and routes under the API, under
/// `/admin/`, and elsewhere; the directory holds its manifest and data.
fn start_shadowed(extra: &[&str]) -> (OstoreProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let hello = guest("hello");
    let manifest = write_manifest(
        dir.path(),
        "shadowed",
        &[
            ("/admin/...", "ui", &hello),
            ("/api/v1/mine", "api", &hello),
            ("/hello", "fine", &hello),
        ],
    );
    let data = dir.path().join("data");
    let mut args = vec![
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (OstoreProcess::start(&args), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_under_the_api_is_warned_about_and_the_host_keeps_those_paths() {
    let (host, _dir) = start_shadowed(&[]);
    let stderr = route_warnings(&host, 1);
    assert!(
        stderr.contains("warning: route /api/v1/mine of application \"shadowed\""),
        "{stderr}"
    );
    // The admin UI has an origin of its own: /admin/ here is the guest's.
    assert!(!stderr.contains("route /admin/..."), "{stderr}");
    assert!(!stderr.contains("route /hello"), "{stderr}");
    assert_eq!(host.get("/admin/").await.text(), "hello, world");
    assert_eq!(host.get("/api/v1/mine").await.status, 404);
    assert_eq!(host.get("/hello").await.text(), "hello, world");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_ui_on_the_applications_listener_is_warned_about_and_keeps_its_paths() {
    let (host, _dir) = start_shadowed(&["--admin-on-app-listener"]);
    let stderr = route_warnings(&host, 2);
    for route in ["/admin/...", "/api/v1/mine"] {
        assert!(
            stderr.contains(&format!(
                "warning: route {route} of application \"shadowed\""
            )),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("warning: the admin UI shares the applications' origin"),
        "{stderr}"
    );
    assert!(!stderr.contains("route /hello"), "{stderr}");
    let page = host.get("/admin/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>ostore admin</title>"));
    assert_eq!(host.get("/hello").await.text(), "hello, world");
    let line = host.stdout_line("Admin UI:");
    assert_eq!(line, format!("Admin UI: http://{}/admin/", host.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_admin_ui_has_an_origin_of_its_own() {
    let (host, _dir) = start_hello(&[]);
    let admin = admin_address(&host);
    assert_ne!(admin.port(), host.addr.port());
    let page = ostore_tests::request(admin, "GET", "/admin/", Default::default()).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>ostore admin</title>"));
    assert_eq!(host.get("/admin/").await.status, 404);
    host.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_admin_port_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "app", &[("/hello", "hello", &guest("hello"))]);
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let run = run_ostore(
        &[
            "up",
            "-f",
            manifest.to_str().unwrap(),
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            &busy,
        ],
        &[],
    );
    assert!(!run.success);
    assert!(
        run.stderr
            .contains(&format!("cannot listen on {busy} for the admin UI")),
        "{}",
        run.stderr
    );
}

/// `ostore up` with `extra` flags and one application that answers
/// `/hello`; the directory holds its manifest and data.
fn start_hello(extra: &[&str]) -> (OstoreProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_manifest(dir.path(), "app", &[("/hello", "hello", &guest("hello"))]);
    let data = dir.path().join("data");
    let mut args = vec![
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    (OstoreProcess::start(&args), dir)
}

/// The admin UI's address, from the start-up banner.
fn admin_address(host: &OstoreProcess) -> std::net::SocketAddr {
    let line = host.stdout_line("Admin UI:");
    line.trim_start_matches("Admin UI: http://")
        .trim_end_matches("/admin/")
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_moves_the_admin_ui_to_an_origin_of_its_own() {
    let (host, _dir) = start_hello(&["--admin-listen", "127.0.0.1:0"]);
    let admin = admin_address(&host);
    assert_ne!(admin.port(), host.addr.port());

    let page = ostore_tests::request(admin, "GET", "/admin/", Default::default()).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>ostore admin</title>"));
    // The UI's API is there too; the applications are not.
    let api = ostore_tests::request(admin, "GET", "/api/v1/environments", Default::default()).await;
    assert_eq!(api.status, 401, "{}", api.text());
    let guest_route = ostore_tests::request(admin, "GET", "/hello", Default::default()).await;
    assert_eq!(guest_route.status, 404);

    // The applications' listener serves the applications and the API, but
    // not the UI.
    assert_eq!(host.get("/hello").await.text(), "hello, world");
    assert_eq!(host.get("/admin/").await.status, 404);
    assert_eq!(host.get("/api/v1/environments").await.status, 401);
    host.stop();
}

#[test]
fn a_credential_for_an_application_no_one_has_run_is_warned_about_naming_the_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let create = |app: &str| {
        let run = run_ostore(
            &["credentials", "create", "--data-dir", data, "--app", app],
            &[],
        );
        assert!(run.success, "{}", run.stderr);
        assert!(run.stdout.contains("client_id:"), "{}", run.stdout);
        run.stderr
    };

    // Before any application has run: a credential may be made ahead of
    // its application's first start, with a warning.
    let stderr = create("shop");
    assert!(
        stderr.contains("warning: no application has run with") && stderr.contains("\"shop\""),
        "{stderr}"
    );

    let manifest = write_manifest(dir.path(), "shop", &[("/hello", "hello", &guest("hello"))]);
    let host = OstoreProcess::start(&["-f", manifest.to_str().unwrap(), "--data-dir", data]);
    // While a host holds the database the name cannot be checked, and the
    // command says so rather than pass it silently.
    let stderr = create("shpo");
    assert!(
        stderr.contains("note: cannot check that an application called \"shpo\" exists"),
        "{stderr}"
    );
    host.stop();

    let stderr = create("shpo");
    assert!(
        stderr.contains("warning: no application called \"shpo\" has run")
            && stderr.contains("known applications: shop."),
        "{stderr}"
    );
    let stderr = create("shop");
    assert!(
        !stderr.contains("warning") && !stderr.contains("note"),
        "{stderr}"
    );
}

#[test]
fn an_instance_cap_of_zero_is_refused_naming_the_flag_and_its_range() {
    for flag in ["--max-instances-per-app", "--max-instances-per-component"] {
        let run = run_ostore(&["up", flag, "0"], &[]);
        assert!(!run.success, "{flag} 0 was accepted");
        assert!(
            run.stderr
                .contains(&format!("invalid value '0' for '{flag} <N>'"))
                && run.stderr.contains("1..=10000"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn a_bad_cache_size_is_one_clear_error() {
    let run = run_ostore(&["up", "--cache-size", "lots"], &[]);
    assert!(!run.success, "--cache-size lots was accepted");
    assert!(
        run.stderr
            .contains("invalid value 'lots' for '--cache-size <SIZE>'")
            && run.stderr.contains("does not start with a number"),
        "{}",
        run.stderr
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let hello = guest("hello");
    let manifest = write_manifest(dir.path(), "tiny", &[("/hello", "hello", &hello)]);
    let line = error_line(&[
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--cache-size",
        "4KiB",
    ]);
    assert!(
        line.contains("cache size must be at least 1MiB, not 4096"),
        "{line}"
    );
    let line = error_line(&[
        "up",
        "-f",
        manifest.to_str().unwrap(),
        "--backend",
        "redis://127.0.0.1:1",
        "--cache-size",
        "64MiB",
    ]);
    assert!(
        line.contains("--cache-size is for the redb backend"),
        "{line}"
    );
}

#[tokio::test]
async fn a_host_with_a_small_cache_serves_its_data_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flow = guest("store-flow");
    let manifest = write_manifest(dir.path(), "cached", &[("/store/...", "flow", &flow)]);
    let args = [
        "-f",
        manifest.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--cache-size",
        "1MiB",
    ];
    let host = OstoreProcess::start(&args);
    let value = "v".repeat(4000);
    for i in 0..300 {
        let body = format!(r#"{{"key":"k{i}","value":"{value}"}}"#);
        let r = host.request("POST", "/store", body).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    host.stop();
    let host = OstoreProcess::start(&args);
    for i in [0, 150, 299] {
        let r = host
            .request("GET", &format!("/store/k{i}"), String::new())
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&value), "{}", r.text());
    }
    host.stop();
}

/// A spin-chain app in `dir/spin.toml`, at `/chain/...`, with the `default`
/// store and a `GREETING` of its own.
fn spin_chain_app(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("spin.toml"),
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"flags-app\"\n\
             [[trigger.http]]\nroute = \"/chain/...\"\ncomponent = \"chain\"\n\
             [component.chain]\nsource = {:?}\nkey_value_stores = [\"default\"]\n\
             environment = {{ GREETING = \"from the manifest\" }}\n",
            guest("spin-chain").display().to_string()
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_up_flags_set_the_environment_the_default_store_and_the_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    spin_chain_app(&app);
    let state = dir.path().join("state");
    let (app_arg, state_arg) = (app.to_str().unwrap(), state.to_str().unwrap());
    let host = OstoreProcess::start(&[
        "-f",
        app_arg,
        "--state-dir",
        state_arg,
        "-e",
        "GREETING=from the flag",
        "--env",
        "EMPTY=",
        "--key-value",
        "motd=a=b",
        "--key-value",
        "other=2",
    ]);
    for (path, expected) in [
        ("/chain/env/GREETING", "from the flag"),
        ("/chain/env/EMPTY", ""),
        ("/chain/kv/motd", "a=b"),
        ("/chain/kv/other", "2"),
    ] {
        let r = host.get(path).await;
        assert_eq!((r.status, r.text().as_str()), (200, expected), "{path}");
    }
    host.stop();
    // The data went to the state directory, not beside the manifest.
    assert!(state.join("ostore.redb").is_file());
    assert!(!app.join(".ostore").exists());

    // Given again, a key is set over the value it had; the others stay.
    let host = OstoreProcess::start(&[
        "-f",
        app_arg,
        "--state-dir",
        state_arg,
        "--key-value",
        "motd=new",
    ]);
    assert_eq!(host.get("/chain/kv/motd").await.text(), "new");
    assert_eq!(host.get("/chain/kv/other").await.text(), "2");
    assert_eq!(
        host.get("/chain/env/GREETING").await.text(),
        "from the manifest"
    );
    host.stop();
}

#[test]
fn spin_up_flags_that_mean_nothing_here_are_one_error_naming_the_flag() {
    for (args, flag) in [
        (&["--sqlite", "@migration.sql"][..], "--sqlite"),
        (&["-q"][..], "--quiet"),
        (&["--temp", "/tmp/x"][..], "--temp"),
        (&["-c", "web"][..], "--component-id"),
        (&["--from-registry", "ghcr.io/a/b:1"][..], "--from-registry"),
    ] {
        let mut up = vec!["up"];
        up.extend_from_slice(args);
        let line = error_line(&up);
        assert!(
            line.starts_with(&format!("error: {flag} is a `spin up` flag")),
            "{line}"
        );
    }
    let run = run_ostore(&["up", "--env", "NO_EQUALS_SIGN"], &[]);
    assert!(!run.success);
    assert!(
        run.stderr.contains("'NO_EQUALS_SIGN'") && run.stderr.contains("KEY=VALUE"),
        "{}",
        run.stderr
    );
}
