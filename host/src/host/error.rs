//! Why a host cannot be built or run, as one error type for the binary
//! and embedders alike.

use std::path::PathBuf;

use crate::api::EnvironmentClash;
use crate::app::LoadError;
use crate::auth::AuthError;
use crate::backend::BackendError;
use crate::objectstore;
use crate::router::RouteError;
use crate::runtime::RuntimeError;

/// Why a host cannot be built or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    #[error("cannot create data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The data could not be opened; `place` is the database file, or the
    /// Redis addresses.
    #[error("cannot open {place}: {source}")]
    Open {
        place: String,
        #[source]
        source: objectstore::Error,
    },
    /// The backend could not be reached or used (Redis); its message is
    /// one line naming the address.
    #[error("{0}")]
    Backend(#[source] BackendError),
    #[error(transparent)]
    Credentials(#[from] AuthError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Environment(#[from] EnvironmentClash),
    #[error("an environment is given for application {0:?}, which no manifest defines")]
    UnknownApplication(String),
    #[error("{}: {source}", path.display())]
    Load {
        path: PathBuf,
        #[source]
        source: LoadError,
    },
    #[error("{}: {source}", path.display())]
    Route {
        path: PathBuf,
        #[source]
        source: Box<RouteError>,
    },
    #[error("cannot use application {name:?}: {source}")]
    Application {
        name: String,
        #[source]
        source: objectstore::Error,
    },
    #[error("cannot set the keys given for the default store of application {name:?}: {source}")]
    DefaultKeys {
        name: String,
        #[source]
        source: objectstore::Error,
    },
    #[error("serving failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("saving the last request counts: {0}")]
    FlushStats(#[source] objectstore::Error),
}
