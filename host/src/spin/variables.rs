//! Spin application variables: `[variables]` in the manifest declares them
//! (with a default, or `required`), a component's `[component.x.variables]`
//! gives it named values that may refer to them as `{{ name }}`, and the
//! environment (`SPIN_VARIABLE_<NAME>`) provides values, as Spin's
//! environment provider does. Everything is resolved when the component is
//! loaded, so a missing required value stops `ostore up` with its name.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use wasmtime::component::{Accessor, HasData, Linker};

use super::bindings_variables::fermyon::spin::variables as v2;
use super::bindings_variables::spin::variables::variables as v3;

/// A variable declared in the manifest's `[variables]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declared {
    pub default: Option<String>,
    pub required: bool,
    /// Never printed; otherwise treated alike.
    pub secret: bool,
}

/// The values one component sees, by name.
#[derive(Debug, Clone, Default)]
pub struct Variables(Arc<HashMap<String, String>>);

/// Where variable values come from, as Spin's providers give them.
#[derive(Debug, Clone, Default)]
pub enum VariableSource {
    /// `SPIN_VARIABLE_<NAME>` in the process environment, as `spin up`.
    #[default]
    Environment,
    /// These values, by the same names (`SPIN_VARIABLE_<NAME>`).
    Given(HashMap<String, String>),
}

impl VariableSource {
    /// The value of `SPIN_VARIABLE_<NAME>`, if provided.
    pub fn get(&self, env_name: &str) -> Option<String> {
        match self {
            VariableSource::Environment => std::env::var(env_name).ok(),
            VariableSource::Given(values) => values.get(env_name).cloned(),
        }
    }
}

/// Why a component's variables cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VariableError {
    #[error(
        "component `{component}` refers to variable {name:?}, which [variables] does not declare"
    )]
    Undeclared { component: String, name: String },
    #[error("variable {name:?} (used by component `{component}`) is required: set {env_name}")]
    Missing {
        component: String,
        name: String,
        env_name: String,
    },
    #[error("variable name {0:?} must be lowercase letters, digits and _")]
    BadName(String),
    #[error(
        "component `{component}`: variable name {name:?} must be lowercase letters, digits and _"
    )]
    BadComponentName { component: String, name: String },
    #[error("variable {0:?} cannot be both required and have a default")]
    RequiredWithDefault(String),
    #[error("unclosed {{{{ in {0:?}")]
    Unclosed(String),
}

/// Whether `name` is a valid variable name: lowercase ASCII letters,
/// digits and underscores, starting with a letter.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl Variables {
    /// Resolves a component's variables against the declared ones, taking
    /// values from `provider` (the environment, in `ostore up`) first.
    pub fn resolve(
        component: &str,
        declared: &BTreeMap<String, Declared>,
        templates: &BTreeMap<String, String>,
        provider: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, VariableError> {
        let value_of = |name: &str| -> Result<String, VariableError> {
            let decl = declared
                .get(name)
                .ok_or_else(|| VariableError::Undeclared {
                    component: component.into(),
                    name: name.into(),
                })?;
            let env_name = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            match (provider(&env_name), &decl.default) {
                (Some(value), _) => Ok(value),
                (None, Some(default)) => Ok(default.clone()),
                (None, None) => Err(VariableError::Missing {
                    component: component.into(),
                    name: name.into(),
                    env_name,
                }),
            }
        };
        for (name, decl) in declared {
            if !valid_name(name) {
                return Err(VariableError::BadName(name.clone()));
            }
            if decl.required && decl.default.is_some() {
                return Err(VariableError::RequiredWithDefault(name.clone()));
            }
        }
        let mut values = HashMap::new();
        for (name, template) in templates {
            if !valid_name(name) {
                return Err(VariableError::BadComponentName {
                    component: component.into(),
                    name: name.clone(),
                });
            }
            values.insert(name.clone(), expand(template, &value_of)?);
        }
        Ok(Self(Arc::new(values)))
    }

    fn get(&self, name: &str) -> Result<String, (bool, String)> {
        if !valid_name(name) {
            return Err((true, name.to_string()));
        }
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| (false, name.to_string()))
    }
}

/// Replaces each `{{ name }}` in `template` with the variable's value.
fn expand(
    template: &str,
    value_of: &impl Fn(&str) -> Result<String, VariableError>,
) -> Result<String, VariableError> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| VariableError::Unclosed(template.into()))?;
        out.push_str(&value_of(after[..end].trim())?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Implemented by store data that holds a component's [`Variables`].
pub trait VariablesView: Send {
    fn variables(&mut self) -> &Variables;
}

struct VariablesBinding;

impl HasData for VariablesBinding {
    type Data<'a> = &'a Variables;
}

impl v2::Host for &Variables {
    fn get(&mut self, name: String) -> Result<String, v2::Error> {
        Variables::get(self, &name).map_err(|(invalid, name)| {
            if invalid {
                v2::Error::InvalidName(name)
            } else {
                v2::Error::Undefined(name)
            }
        })
    }
}

impl v3::Host for &Variables {}

impl<T: Send> v3::HostWithStore<T> for VariablesBinding {
    async fn get(accessor: &Accessor<T, Self>, name: String) -> Result<String, v3::Error> {
        accessor.with(|mut access| {
            access.get().get(&name).map_err(|(invalid, name)| {
                if invalid {
                    v3::Error::InvalidName(name)
                } else {
                    v3::Error::Undefined(name)
                }
            })
        })
    }
}

/// Adds `fermyon:spin/variables@2.0.0` and `spin:variables/variables@3.0.0`.
pub fn add_to_linker<T: VariablesView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    super::bindings_variables::SpinVariables::add_to_linker::<T, VariablesBinding>(linker, |t| {
        t.variables()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_resolve_from_the_environment_then_defaults() {
        let declared = BTreeMap::from([
            (
                "greeting".to_string(),
                Declared {
                    default: Some("hello".into()),
                    ..Default::default()
                },
            ),
            (
                "secret".to_string(),
                Declared {
                    required: true,
                    secret: true,
                    ..Default::default()
                },
            ),
        ]);
        let templates = BTreeMap::from([
            ("message".to_string(), "{{ greeting }}, world".to_string()),
            ("token".to_string(), "{{secret}}".to_string()),
        ]);
        let env = |name: &str| (name == "SPIN_VARIABLE_SECRET").then(|| "s3cret".to_string());
        let vars = Variables::resolve("c", &declared, &templates, env).unwrap();
        assert_eq!(vars.get("message").unwrap(), "hello, world");
        assert_eq!(vars.get("token").unwrap(), "s3cret");
        assert_eq!(vars.get("nope"), Err((false, "nope".into())));
        assert_eq!(vars.get("Bad-Name"), Err((true, "Bad-Name".into())));

        let missing = Variables::resolve("c", &declared, &templates, |_| None)
            .unwrap_err()
            .to_string();
        assert!(
            missing.contains("SPIN_VARIABLE_SECRET") && missing.contains("`c`"),
            "{missing}"
        );
        let undeclared = BTreeMap::from([("x".to_string(), "{{ other }}".to_string())]);
        assert!(Variables::resolve("c", &declared, &undeclared, |_| None).is_err());
    }
}
