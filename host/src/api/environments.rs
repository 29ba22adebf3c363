//! Which application each `(organization, environment)` pair of the REST
//! API names.

use std::collections::HashMap;

use crate::auth::Principal;

/// Which application each `(organization, environment)` pair names.
#[derive(Debug, Clone, Default)]
pub struct Environments {
    by_path: HashMap<(String, String), String>,
}

/// Two applications were given the same organization and environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("organization {org:?} environment {env:?} would name both {existing:?} and {app:?}")]
pub struct EnvironmentClash {
    pub org: String,
    pub env: String,
    pub existing: String,
    pub app: String,
}

impl Environments {
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps `org`/`env` to `app`. Fails if the pair already names another
    /// application.
    pub fn add(&mut self, org: &str, env: &str, app: &str) -> Result<(), EnvironmentClash> {
        match self.by_path.insert((org.into(), env.into()), app.into()) {
            Some(existing) if existing != app => Err(EnvironmentClash {
                org: org.into(),
                env: env.into(),
                existing,
                app: app.into(),
            }),
            _ => Ok(()),
        }
    }

    /// The application `org`/`env` names.
    pub fn app(&self, org: &str, env: &str) -> Option<&str> {
        self.by_path
            .get(&(org.to_string(), env.to_string()))
            .map(String::as_str)
    }

    /// Every mapping as `(organization, environment, application)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.by_path
            .iter()
            .map(|((o, e), a)| (o.as_str(), e.as_str(), a.as_str()))
    }

    /// The triples whose application `principal` may use, in name order.
    pub fn visible_to(&self, principal: &Principal) -> Vec<(&str, &str, &str)> {
        let mut visible: Vec<_> = self
            .iter()
            .filter(|(_, _, app)| principal.may_access(app))
            .collect();
        visible.sort();
        visible
    }
}
