//! Commands on a data directory, not through the REST API: credentials
//! (in the data's backend, or through the running host that holds it), and
//! self-signed TLS certificates.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::auth::{CredentialAdmin, Principal, Scope};
use crate::backend::BackendConfig;
use crate::encryption::{MASTER_KEY_ENV, MasterKey};
use crate::host::DataDir;

#[derive(Subcommand)]
pub(super) enum TlsCommand {
    /// Make a self-signed certificate and key (PEM) for local use; pass them
    /// to `ostore up --tls-cert --tls-key`. Clients must trust the
    /// certificate explicitly (e.g. `curl --cacert cert.pem`).
    SelfSigned {
        /// Directory to write cert.pem and key.pem into.
        #[arg(long, value_name = "DIR", default_value = ".ostore/tls")]
        out_dir: PathBuf,
        /// A host name or IP address the certificate is for; repeatable.
        #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_string(), "127.0.0.1".to_string()])]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
pub(super) enum CredentialsCommand {
    /// Make a credential; its secret is printed once and stored only hashed.
    Create(CreateCredentialArgs),
    /// List credentials (never their secrets).
    List(KeyArgs),
    /// Delete a credential; tokens issued for it stop working at once.
    Delete {
        /// The credential's client id.
        client_id: String,
        #[command(flatten)]
        keys: KeyArgs,
    },
}

/// Where the data and its master key are.
#[derive(Args)]
pub(super) struct KeyArgs {
    /// Directory of the encrypted database (as given to `ostore up`).
    #[arg(
        long,
        value_name = "DIR",
        env = "OSTORE_DATA_DIR",
        default_value = ".ostore"
    )]
    pub(super) data_dir: PathBuf,

    /// File holding the master key; ignored when OSTORE_MASTER_KEY is set.
    /// Default: `master.key` in the data directory.
    #[arg(long, value_name = "FILE")]
    pub(super) key_file: Option<PathBuf>,

    /// Where the hosts keep their records, as given to `ostore up`: `redb`
    /// (the data directory's file) or a Redis URL (a password not in it is
    /// taken from OSTORE_REDIS_PASSWORD).
    #[arg(long, value_name = "redb|URL", default_value = "redb")]
    pub(super) backend: BackendConfig,
}

#[derive(Args)]
pub(super) struct CreateCredentialArgs {
    /// The application the credential may use.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "admin",
        conflicts_with = "admin"
    )]
    app: Option<String>,

    /// Make an admin credential, for every application.
    #[arg(long)]
    admin: bool,

    /// A scope to grant (read:store, manage:store_data, manage:store,
    /// read:store_metrics); repeatable. Default: all four.
    #[arg(long = "scope", value_name = "SCOPE", value_parser = parse_scope)]
    scopes: Vec<Scope>,

    #[command(flatten)]
    keys: KeyArgs,
}

fn parse_scope(text: &str) -> Result<Scope, String> {
    Scope::parse(text).ok_or_else(|| {
        let all: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown scope; use one of {}", all.join(", "))
    })
}

/// The master key of `data`: from `$OSTORE_MASTER_KEY`, else from the key
/// file (made if missing).
pub(super) fn master_key(data: &DataDir, key_file: Option<&Path>) -> anyhow::Result<MasterKey> {
    let text = match std::env::var(MASTER_KEY_ENV) {
        Ok(text) => Some(text),
        Err(std::env::VarError::NotUnicode(_)) => bail!("${MASTER_KEY_ENV} is not text"),
        Err(std::env::VarError::NotPresent) => None,
    };
    let (key, created) = match &text {
        Some(_) => data
            .master_key(key_file, text.as_deref())
            .with_context(|| format!("${MASTER_KEY_ENV}"))?,
        None => data.master_key(key_file, None)?,
    };
    if created {
        eprintln!(
            "created a new master key in {}",
            key_file
                .map_or_else(|| data.default_key_file(), Path::to_path_buf)
                .display()
        );
    }
    Ok(key)
}

pub(super) async fn credentials(command: CredentialsCommand) -> anyhow::Result<()> {
    let keys = match &command {
        CredentialsCommand::Create(args) => &args.keys,
        CredentialsCommand::List(keys) | CredentialsCommand::Delete { keys, .. } => keys,
    };
    let data = DataDir::new(&keys.data_dir);
    data.create()?;
    let master = master_key(&data, keys.key_file.as_deref())?;
    let mut backend = keys.backend.clone();
    super::up::redis_password_from_env(&mut backend);
    let store = data.credential_admin(&master, &backend).await?;
    match command {
        CredentialsCommand::Create(args) => {
            let principal = match args.app {
                Some(app) => {
                    warn_if_unknown(&data, &store, &app).await;
                    Principal::Application(app)
                }
                None => Principal::Admin,
            };
            let scopes = if args.scopes.is_empty() {
                Scope::ALL.to_vec()
            } else {
                args.scopes
            };
            let new = store.create(principal, scopes).await?;
            println!("client_id: {}", new.client_id);
            println!("client_secret: {}", new.client_secret);
            eprintln!("The secret is shown only now; ostore keeps only a hash of it.");
        }
        CredentialsCommand::List(_) => {
            for c in store.list().await? {
                let who = match &c.principal {
                    Principal::Admin => "admin (all applications)".to_string(),
                    Principal::Application(app) => format!("application {app}"),
                };
                let scopes: Vec<_> = c.scopes.iter().map(|s| s.as_str()).collect();
                println!("{}  {who}  {}", c.client_id, scopes.join(" "));
            }
        }
        CredentialsCommand::Delete { client_id, .. } => {
            if !store.delete(&client_id).await? {
                bail!("no credential {client_id}");
            }
            println!("deleted {client_id}");
        }
    }
    Ok(())
}

/// Warns when no application called `app` has run with `data`: a misspelt
/// name makes a credential that can never reach anything. Only a warning,
/// since a credential may well be made before its application first starts.
async fn warn_if_unknown(data: &DataDir, store: &CredentialAdmin, app: &str) {
    match known_applications(data, store).await {
        Ok(known) if known.iter().any(|name| name == app) => {}
        Ok(known) if known.is_empty() => eprintln!(
            "warning: no application has run with {} yet; the credential will work \
             once an application called {app:?} does",
            data.path().display()
        ),
        Ok(known) => eprintln!(
            "warning: no application called {app:?} has run with {}; known applications: \
             {}. The credential will work once an application of that name does",
            data.path().display(),
            known.join(", ")
        ),
        Err(e) => eprintln!(
            "note: cannot check that an application called {app:?} exists: {}",
            super::report(e.as_ref())
        ),
    }
}

/// The applications that have run with `data`, read from its database.
/// Fails while a running host holds the database.
async fn known_applications(
    data: &DataDir,
    store: &CredentialAdmin,
) -> anyhow::Result<Vec<String>> {
    match store {
        CredentialAdmin::Backend { objectstore, .. } => Ok(objectstore.application_names().await?),
        #[cfg(unix)]
        CredentialAdmin::Host(_) => bail!("a running host holds {}", data.database().display()),
    }
}

/// Writes a self-signed certificate and its key into `dir`.
pub(super) fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<()> {
    let (cert, key) = crate::tls::self_signed(names)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    let mut file = crate::fs::private_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&key_path)
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    std::io::Write::write_all(&mut file, key.as_bytes())?;
    println!("certificate: {}", cert_path.display());
    println!("private key: {}", key_path.display());
    Ok(())
}
