//! The runtime config file's `[key_value_store.<label>]` tables (the shape
//! Spin uses), and the labels each component is granted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;

use crate::backend::BackendConfig;
use crate::objectstore::{DEFAULT_STORE, Ttl};

use super::Grants;

/// Why a runtime config file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeConfigError {
    #[error("cannot read runtime config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("runtime config{}: {message}", path.as_deref().map(|p| format!(" {p}")).unwrap_or_default())]
    Malformed {
        path: Option<String>,
        message: String,
    },
}

/// A component lists a store label that is not defined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "component `{component}` uses key-value store label {label:?}, which is not \
     defined: only \"default\" is predefined; define others in a runtime config \
     file ([key_value_store.{label}], --runtime-config-file)"
)]
pub struct UnknownLabel {
    pub component: String,
    pub label: String,
}

/// Where a label's data lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelTarget {
    pub store: String,
    pub partition: String,
    /// The partition's TTL; `Ttl::Never` unless configured.
    pub ttl: Ttl,
}

/// The `[key_value_store.<label>]` tables of a runtime config file.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    labels: BTreeMap<String, LabelTarget>,
    /// The `[object_store]` table: where records are kept.
    pub backend: Option<BackendConfig>,
    /// Settings ostore does not support, named for a warning.
    pub warnings: Vec<String>,
}

#[derive(Deserialize)]
struct RawRuntimeConfig {
    #[serde(default)]
    key_value_store: BTreeMap<String, RawLabel>,
    object_store: Option<BackendConfig>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
struct RawLabel {
    #[serde(rename = "type")]
    kind: String,
    store: Option<String>,
    partition: Option<String>,
    ttl_seconds: Option<u64>,
    #[serde(default)]
    rolling: bool,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

impl RuntimeConfig {
    /// Reads a runtime config file.
    pub fn load(path: &Path) -> Result<Self, RuntimeConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| RuntimeConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            RuntimeConfigError::Malformed { message, .. } => RuntimeConfigError::Malformed {
                path: Some(path.display().to_string()),
                message,
            },
            other => other,
        })
    }

    pub fn parse(text: &str) -> Result<Self, RuntimeConfigError> {
        let malformed = |message: String| RuntimeConfigError::Malformed {
            path: None,
            message,
        };
        let raw: RawRuntimeConfig =
            toml::from_str(text).map_err(|e| malformed(e.message().to_string()))?;
        let mut config = RuntimeConfig {
            backend: raw.object_store,
            ..RuntimeConfig::default()
        };
        for table in raw.other.keys() {
            config
                .warnings
                .push(format!("unsupported table `{table}` is ignored"));
        }
        for (label, raw) in raw.key_value_store {
            match raw.kind.as_str() {
                // "spin" is Spin's own local store: here, the object store.
                "ostore" | "spin" => {}
                other => config.warnings.push(format!(
                    "key_value_store.{label}: type {other:?} is served by ostore's own store"
                )),
            }
            for field in raw.other.keys() {
                config.warnings.push(format!(
                    "key_value_store.{label}: unsupported field `{field}` is ignored"
                ));
            }
            let ttl = match raw.ttl_seconds {
                None => Ttl::Never,
                Some(0) => {
                    return Err(malformed(format!(
                        "key_value_store.{label}: ttl_seconds must be above 0"
                    )));
                }
                Some(s) if raw.rolling => Ttl::Rolling(s),
                Some(s) => Ttl::Fixed(s),
            };
            config.labels.insert(
                label.clone(),
                LabelTarget {
                    store: raw.store.unwrap_or_else(|| DEFAULT_STORE.to_string()),
                    partition: raw.partition.unwrap_or_else(|| label.clone()),
                    ttl,
                },
            );
        }
        Ok(config)
    }

    /// Resolves the labels a component lists in `key_value_stores`. An
    /// unknown label is an error naming the component and the label.
    pub fn grant(&self, component: &str, labels: &[String]) -> Result<Grants, UnknownLabel> {
        let mut granted = HashMap::new();
        for label in labels {
            let target = match self.labels.get(label) {
                Some(target) => target.clone(),
                None if label == "default" => LabelTarget {
                    store: DEFAULT_STORE.to_string(),
                    partition: label.clone(),
                    ttl: Ttl::Never,
                },
                None => {
                    return Err(UnknownLabel {
                        component: component.into(),
                        label: label.clone(),
                    });
                }
            };
            granted.insert(label.clone(), target);
        }
        Ok(Grants(Arc::new(granted)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_default_and_from_runtime_config() {
        let config = RuntimeConfig::parse(
            r#"
[key_value_store.cache]
type = "spin"
ttl_seconds = 60
rolling = true

[key_value_store.orders]
type = "ostore"
store = "Orders"
partition = "open"

[key_value_store.remote]
type = "redis"
url = "redis://localhost"
"#,
        )
        .unwrap();
        let grants = config
            .grant("web", &["default".into(), "cache".into(), "orders".into()])
            .unwrap();
        assert_eq!(
            grants.0["default"],
            LabelTarget {
                store: DEFAULT_STORE.into(),
                partition: "default".into(),
                ttl: Ttl::Never
            }
        );
        assert_eq!(grants.0["cache"].ttl, Ttl::Rolling(60));
        assert_eq!(
            (
                grants.0["orders"].store.as_str(),
                grants.0["orders"].partition.as_str()
            ),
            ("Orders", "open")
        );
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        let err = config
            .grant("web", &["missing".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`web`") && err.contains("\"missing\""),
            "{err}"
        );
        assert!(RuntimeConfig::parse("[key_value_store.x]\ntype='spin'\nttl_seconds=0").is_err());
    }

    #[test]
    fn the_object_store_table_sets_the_redb_cache_size() {
        use crate::backend::RedbConfig;
        use crate::size::ByteSize;
        let redb = |text: &str| RuntimeConfig::parse(text).map(|c| c.backend);
        assert_eq!(
            redb("[object_store]\ntype = 'redb'\ncache_size = '256MiB'").unwrap(),
            Some(BackendConfig::Redb(RedbConfig {
                cache_size: ByteSize(256 << 20)
            }))
        );
        assert_eq!(
            redb("[object_store]\ntype = 'redb'\ncache_size = 1048576").unwrap(),
            Some(BackendConfig::Redb(RedbConfig {
                cache_size: ByteSize(1 << 20)
            }))
        );
        assert_eq!(
            redb("[object_store]\ntype = 'redb'").unwrap(),
            Some(BackendConfig::redb())
        );
        let bad = redb("[object_store]\ntype = 'redb'\ncache_size = '64 parsecs'")
            .unwrap_err()
            .to_string();
        assert!(bad.contains("invalid size \"64 parsecs\""), "{bad}");
        let misspelt = redb("[object_store]\ntype = 'redb'\ncache = '64MiB'")
            .unwrap_err()
            .to_string();
        assert!(misspelt.contains("unknown field `cache`"), "{misspelt}");
    }
}
