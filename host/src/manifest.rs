//! Reading a Spin application manifest (`spin.toml`, manifest version 2).
//!
//! What ostore uses is read into typed fields; any other field is kept as a
//! warning naming it, so that a user learns it is ignored instead of
//! wondering why it has no effect.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

mod route;

pub use route::{Matched, Route};

/// Why a manifest cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("cannot read manifest {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed manifest {path}: {problem}")]
    Malformed {
        path: String,
        #[source]
        problem: Problem,
    },
}

/// What is wrong with a manifest's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Not TOML, or not the shape of a manifest.
    #[error("{0}")]
    Syntax(String),
    #[error("`spin_manifest_version = 2` is required")]
    Version,
    #[error("missing [application] table")]
    NoApplication,
    #[error("missing `application.name`")]
    NoName,
    #[error("component `{0}`: only a local file path is supported as `source`")]
    Source(String),
    #[error("component `{component}`: files destination {destination:?} must be absolute")]
    Destination {
        component: String,
        destination: String,
    },
    #[error("component `{component}`: allowed_outbound_hosts entry {rule:?}: {why}")]
    OutboundRule {
        component: String,
        rule: String,
        why: &'static str,
    },
    #[error("route {route:?} names component `{component}`, which is not defined")]
    UnknownComponent { route: String, component: String },
    #[error(
        "the route of component `{0}` must be a path or `{{ private = true }}`, not \
         `{{ private = false }}`"
    )]
    NotPrivate(String),
    #[error("route {0:?} must start with '/'")]
    RouteStart(String),
    #[error("route {0:?}: '...' may only end a route")]
    RouteWildcard(String),
    #[error("route {0:?}: a ':' segment needs a name")]
    RouteParam(String),
    #[error("route {route} is given twice (components `{first}` and `{second}`)")]
    DuplicateRoute {
        route: String,
        first: String,
        second: String,
    },
    #[error("no [[trigger.http]] routes")]
    NoRoutes,
}

/// An application described by a manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// The application's name: its identity in the object store.
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, ComponentSpec>,
    /// The application's `[variables]`.
    pub variables: BTreeMap<String, crate::spin::variables::Declared>,
    /// Fields present in the file that ostore does not support.
    pub warnings: Vec<String>,
}

/// A `[[trigger.http]]`: a component and the route it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTrigger {
    /// `None` for a private endpoint (`route = { private = true }`): no
    /// client reaches it; only the application's own components do, by
    /// service chaining (`http://<component>.spin.internal/...`).
    pub route: Option<Route>,
    pub component: String,
}

/// A component of the application.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// The `.wasm` file, resolved against the manifest's directory.
    pub source: PathBuf,
    pub build: Option<BuildSpec>,
    pub environment: BTreeMap<String, String>,
    pub key_value_stores: Vec<String>,
    /// Directories the component sees, read-only.
    pub files: Vec<Mount>,
    /// Where the component may send HTTP requests.
    pub allowed_outbound_hosts: Vec<OutboundRule>,
    /// The component's variables: names and templates (`{{ app_var }}`).
    pub variables: BTreeMap<String, String>,
}

/// One `allowed_outbound_hosts` entry: `scheme://host:port`, where each
/// part may be `*` (a host may also be `*.domain`), and the port may be left
/// out for the scheme's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl OutboundRule {
    /// Reads a rule; an error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Self, &'static str> {
        if text.contains("{{") {
            return Err("variables in hosts are not supported");
        }
        let (scheme, rest) = text
            .split_once("://")
            .ok_or("expected scheme://host[:port]")?;
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, "*")) => (host, None),
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| "bad port")?)),
            None => match scheme {
                "http" => (rest, Some(80)),
                "https" => (rest, Some(443)),
                _ => return Err("give a port for this scheme"),
            },
        };
        if host.is_empty() || rest.contains('/') {
            return Err("expected scheme://host[:port]");
        }
        Ok(Self {
            scheme: scheme.to_ascii_lowercase(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this rule allows a request to `scheme://host:port`.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        (self.scheme == "*" || self.scheme.eq_ignore_ascii_case(scheme))
            && (self.host == "*"
                || self.host == host
                || self
                    .host
                    .strip_prefix("*.")
                    .is_some_and(|domain| host.ends_with(&format!(".{domain}"))))
            && self.port.is_none_or(|p| p == port)
    }

    /// Whether this rule allows self requests: Spin's `http://self` or
    /// `http://self.alt` (either scheme, any port), or any host.
    pub fn allows_self_requests(&self) -> bool {
        self.web_scheme() && matches!(self.host.as_str(), "self" | "self.alt" | "*")
    }

    /// Whether this rule allows service chaining to `host`
    /// (`<component>.spin.internal`): that host, `*.spin.internal` or any
    /// host, with either scheme and any port, as in Spin.
    pub fn allows_chaining_to(&self, host: &str) -> bool {
        self.web_scheme()
            && (self.host == "*" || self.host == host || self.host == "*.spin.internal")
    }

    fn web_scheme(&self) -> bool {
        matches!(self.scheme.as_str(), "http" | "https" | "*")
    }
}

/// A host directory the guest sees, read-only, at `guest_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Resolved against the manifest's directory.
    pub host_path: PathBuf,
    /// Absolute, in the guest's file system.
    pub guest_path: String,
}

/// How `ostore up --build` builds a component.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    pub command: String,
    /// Where to run it, resolved against the manifest's directory.
    pub workdir: PathBuf,
}

#[derive(Deserialize)]
struct RawManifest {
    spin_manifest_version: Option<toml::Value>,
    application: Option<RawApplication>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
    #[serde(default)]
    variables: BTreeMap<String, RawVariable>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawApplication {
    name: Option<String>,
    version: Option<String>,
    description: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize, Default)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawHttpTrigger {
    route: RawRoute,
    component: String,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawComponent {
    source: toml::Value,
    build: Option<RawBuild>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    files: Vec<RawFiles>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// A trigger's `route`: a path, or `{ private = true }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private(RawPrivate),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivate {
    private: bool,
}

/// A `files` entry: a path, or `{ source, destination }`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawFiles {
    Path(String),
    Mapped { source: String, destination: String },
}

#[derive(Deserialize)]
struct RawBuild {
    command: String,
    workdir: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

fn warn_unsupported(
    warnings: &mut Vec<String>,
    table: &str,
    other: &BTreeMap<String, toml::Value>,
) {
    for field in other.keys() {
        warnings.push(format!("unsupported field `{table}{field}` is ignored"));
    }
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses manifest text; `path` locates relative files and names the
    /// manifest in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ManifestError> {
        let malformed = |problem: Problem| ManifestError::Malformed {
            path: path.display().to_string(),
            problem,
        };
        let raw: RawManifest = toml::from_str(text)
            .map_err(|e| malformed(Problem::Syntax(e.message().to_string())))?;
        match raw
            .spin_manifest_version
            .as_ref()
            .and_then(toml::Value::as_integer)
        {
            Some(2) => {}
            _ => return Err(malformed(Problem::Version)),
        }
        let app = raw
            .application
            .ok_or_else(|| malformed(Problem::NoApplication))?;
        let name = app
            .name
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| malformed(Problem::NoName))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut warnings = Vec::new();
        warn_unsupported(&mut warnings, "", &raw.other);
        warn_unsupported(&mut warnings, "application.", &app.other);
        warn_unsupported(&mut warnings, "trigger.", &raw.trigger.other);

        let mut variables = BTreeMap::new();
        for (name, v) in raw.variables {
            warn_unsupported(&mut warnings, &format!("variables.{name}."), &v.other);
            variables.insert(
                name,
                crate::spin::variables::Declared {
                    default: v.default,
                    required: v.required,
                    secret: v.secret,
                },
            );
        }
        let mut components = BTreeMap::new();
        for (id, c) in raw.component {
            let source = match &c.source {
                toml::Value::String(s) => dir.join(s),
                _ => {
                    return Err(malformed(Problem::Source(id)));
                }
            };
            warn_unsupported(&mut warnings, &format!("component.{id}."), &c.other);
            let mut files = Vec::new();
            for entry in c.files {
                let (source, destination) = match entry {
                    RawFiles::Path(path) => {
                        (path.clone(), format!("/{}", path.trim_start_matches("./")))
                    }
                    RawFiles::Mapped {
                        source,
                        destination,
                    } => (source, destination),
                };
                let host_path = dir.join(&source);
                // Spin also takes single files and glob patterns; ostore
                // mounts directories only, and says so.
                if !host_path.is_dir() {
                    warnings.push(format!(
                        "component.{id}.files: {source:?} is not a directory and is not mounted \
                         (only directories are supported)"
                    ));
                    continue;
                }
                if !destination.starts_with('/') {
                    return Err(malformed(Problem::Destination {
                        component: id,
                        destination,
                    }));
                }
                files.push(Mount {
                    host_path,
                    guest_path: destination,
                });
            }
            let allowed_outbound_hosts = c
                .allowed_outbound_hosts
                .iter()
                .map(|rule| {
                    OutboundRule::parse(rule).map_err(|why| Problem::OutboundRule {
                        component: id.clone(),
                        rule: rule.clone(),
                        why,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(malformed)?;
            let build = c.build.map(|b| {
                warn_unsupported(&mut warnings, &format!("component.{id}.build."), &b.other);
                BuildSpec {
                    command: b.command,
                    workdir: dir.join(b.workdir.unwrap_or_default()),
                }
            });
            components.insert(
                id,
                ComponentSpec {
                    source,
                    build,
                    environment: c.environment,
                    key_value_stores: c.key_value_stores,
                    files,
                    allowed_outbound_hosts,
                    variables: c.variables,
                },
            );
        }

        let mut triggers: Vec<HttpTrigger> = Vec::new();
        for t in raw.trigger.http {
            warn_unsupported(&mut warnings, "trigger.http.", &t.other);
            if !components.contains_key(&t.component) {
                return Err(malformed(Problem::UnknownComponent {
                    route: match t.route {
                        RawRoute::Path(path) => path,
                        RawRoute::Private(_) => "{ private = true }".into(),
                    },
                    component: t.component,
                }));
            }
            let route = match t.route {
                RawRoute::Path(path) => Route::parse(&path).map_err(malformed)?,
                RawRoute::Private(RawPrivate { private: true }) => {
                    triggers.push(HttpTrigger {
                        route: None,
                        component: t.component,
                    });
                    continue;
                }
                RawRoute::Private(RawPrivate { private: false }) => {
                    return Err(malformed(Problem::NotPrivate(t.component)));
                }
            };
            if let Some(dup) = triggers
                .iter()
                .find(|other| other.route.as_ref() == Some(&route))
            {
                return Err(malformed(Problem::DuplicateRoute {
                    route: route.to_string(),
                    first: dup.component.clone(),
                    second: t.component,
                }));
            }
            triggers.push(HttpTrigger {
                route: Some(route),
                component: t.component,
            });
        }
        if triggers.is_empty() {
            return Err(malformed(Problem::NoRoutes));
        }
        Ok(Self {
            path: path.to_path_buf(),
            name,
            version: app.version,
            description: app.description,
            triggers,
            components,
            variables,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[[trigger.http]]
route = "/store/..."
component = "flow"
[component.flow]
source = "flow.wasm"
allowed_outbound_hosts = []
[component.flow.build]
command = "cargo build"
workdir = "guest"
"#;

    #[test]
    fn reads_routes_components_and_warns_on_unsupported_fields() {
        let m = Manifest::parse(Path::new("/app/spin.toml"), GOOD).unwrap();
        assert_eq!(m.name, "demo");
        assert_eq!(
            m.triggers[0].route.as_ref().map(ToString::to_string),
            Some("/store/...".into())
        );
        let c = &m.components["flow"];
        assert_eq!(c.source, Path::new("/app/flow.wasm"));
        assert_eq!(c.build.as_ref().unwrap().workdir, Path::new("/app/guest"));
        assert!(m.warnings.is_empty(), "{:?}", m.warnings);
    }

    #[test]
    fn rejects_broken_manifests_with_a_reason() {
        for (text, needle) in [
            ("spin_manifest_version = 1", "spin_manifest_version = 2"),
            ("spin_manifest_version = 2", "[application]"),
            ("not toml [", "malformed"),
            (
                "spin_manifest_version = 2\n[application]\nname='a'\n[[trigger.http]]\nroute='/'\ncomponent='x'",
                "not defined",
            ),
        ] {
            let err = Manifest::parse(Path::new("spin.toml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn a_private_endpoint_has_no_route_and_private_false_is_refused() {
        let manifest = |route: &str| {
            format!(
                "spin_manifest_version = 2\n[application]\nname = 'a'\n[[trigger.http]]\n\
                 route = {route}\ncomponent = 'x'\n[component.x]\nsource = 'x.wasm'\n"
            )
        };
        let m = Manifest::parse(Path::new("spin.toml"), &manifest("{ private = true }")).unwrap();
        assert_eq!(m.triggers[0].route, None);
        assert_eq!(m.triggers[0].component, "x");
        for (route, needle) in [
            ("{ private = false }", "not `{ private = false }`"),
            ("{ private = true, also = 1 }", "malformed"),
        ] {
            let err = Manifest::parse(Path::new("spin.toml"), &manifest(route))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{route}: {err}");
        }
    }

    #[test]
    fn outbound_rules_match_scheme_host_and_port() {
        let rule = |t: &str| OutboundRule::parse(t).unwrap();
        assert!(rule("https://example.com").allows("https", "EXAMPLE.com", 443));
        assert!(!rule("https://example.com").allows("https", "example.com", 8443));
        assert!(!rule("https://example.com").allows("http", "example.com", 443));
        assert!(rule("http://127.0.0.1:8080").allows("http", "127.0.0.1", 8080));
        assert!(rule("https://*.example.com").allows("https", "api.example.com", 443));
        assert!(!rule("https://*.example.com").allows("https", "example.com.evil", 443));
        assert!(rule("*://*:*").allows("http", "anything", 1));
        for bad in [
            "example.com",
            "redis://host",
            "http://h:port",
            "https://{{ host }}",
            "http://h/path",
        ] {
            assert!(OutboundRule::parse(bad).is_err(), "{bad}");
        }
    }
}
