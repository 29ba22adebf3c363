//! Loading one application: from its manifest to the key-value labels each
//! component is granted (with their partitions' TTLs), its variables, and its
//! compiled components, ready to be routed.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::budget::MemoryBudget;

use crate::manifest::{Manifest, Route};
use crate::objectstore::{self, Application};
use crate::runtime::{ComponentError, ComponentSettings, HttpComponent, Runtime};
use crate::spin::variables::{VariableError, VariableSource, Variables};
use crate::spin::{RuntimeConfig, UnknownLabel};

/// An application ready to serve: its name, its routes, and every component
/// a trigger names (private ones too), by id, for service chaining.
pub struct LoadedApp {
    pub name: String,
    pub routes: Vec<(Route, HttpComponent)>,
    pub components: BTreeMap<String, HttpComponent>,
}

/// Why an application cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("component `{component}`: {source}")]
    Component {
        component: String,
        #[source]
        source: ComponentError,
    },
    #[error(transparent)]
    Label(#[from] UnknownLabel),
    #[error(transparent)]
    Variable(#[from] VariableError),
    #[error("component `{component}`: cannot prepare its key-value stores: {source}")]
    Storage {
        component: String,
        #[source]
        source: objectstore::Error,
    },
}

/// Everything an application's components need from the host.
pub struct AppContext<'a> {
    pub runtime: &'a Runtime,
    /// The host's memory budget, which guests' memories are charged to.
    pub memory: &'a MemoryBudget,
    pub runtime_config: &'a RuntimeConfig,
    pub variables: &'a VariableSource,
    /// Environment variables every component gets, over its manifest's
    /// (`ostore up --env`, as `spin up --env`).
    pub environment: &'a [(String, String)],
}

/// Loads every component `manifest` routes to, for application `app`.
pub async fn load(
    cx: &AppContext<'_>,
    manifest: &Manifest,
    app: Application,
) -> Result<LoadedApp, LoadError> {
    let mut loaded: BTreeMap<&str, HttpComponent> = BTreeMap::new();
    // One share for the whole application: its components' instances count
    // against one cap, and their CPU against one account.
    let share = cx.runtime.app_share(&manifest.name);
    for trigger in &manifest.triggers {
        let id = trigger.component.as_str();
        if loaded.contains_key(id) {
            continue;
        }
        let spec = &manifest.components[id];
        // Before anything is written for the component: a missing file is
        // the likeliest mistake, and says how to fix it.
        if !spec.source.is_file() {
            return Err(LoadError::Component {
                component: id.into(),
                source: ComponentError::Missing(spec.source.clone()),
            });
        }
        let grants = cx.runtime_config.grant(id, &spec.key_value_stores)?;
        grants
            .prepare(&app)
            .await
            .map_err(|source| LoadError::Storage {
                component: id.into(),
                source,
            })?;
        let variables = Variables::resolve(id, &manifest.variables, &spec.variables, |name| {
            cx.variables.get(name)
        })?;
        let mut environment = spec.environment.clone();
        environment.extend(cx.environment.iter().cloned());
        let settings = ComponentSettings {
            id: id.into(),
            environment: environment.into_iter().collect(),
            grants,
            files: spec.files.clone(),
            allowed_outbound_hosts: Arc::new(spec.allowed_outbound_hosts.clone()),
            variables,
            memory: cx.memory.clone(),
        };
        let component = cx
            .runtime
            .load_http_component(&spec.source, app.clone(), &share, settings)
            .map_err(|source| LoadError::Component {
                component: id.into(),
                source,
            })?;
        loaded.insert(id, component);
    }
    // Private endpoints have no route: only service chaining reaches them.
    let routes = manifest
        .triggers
        .iter()
        .filter_map(|t| Some((t.route.clone()?, loaded[t.component.as_str()].clone())))
        .collect();
    Ok(LoadedApp {
        name: manifest.name.clone(),
        routes,
        components: loaded
            .into_iter()
            .map(|(id, component)| (id.to_string(), component))
            .collect(),
    })
}
