//! The client commands: keys, stores, partitions and statistics of a
//! running server, through its REST and Stats APIs.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::{Args, Subcommand};
use http::Method;

use crate::api::wire::{KeyInfo, KeyValue, StatsPoint, StoreInfo, Value, ValueWrite};
use crate::client::{Client, EnvironmentPaths, with_query};
use crate::objectstore;

/// Which server, application and credential the client commands use.
#[derive(Args)]
pub(super) struct ServerArgs {
    /// The server's URL.
    #[arg(
        long,
        value_name = "URL",
        env = "OSTORE_SERVER",
        default_value = "http://127.0.0.1:3000",
        global = true
    )]
    server: String,
    /// The organization.
    #[arg(
        long = "org",
        value_name = "ORG",
        env = "OSTORE_ORGANIZATION",
        default_value = "default",
        global = true
    )]
    organization: String,
    /// The environment, which names the application (by default its name).
    #[arg(
        long = "env",
        value_name = "ENV",
        env = "OSTORE_ENVIRONMENT",
        global = true
    )]
    environment: Option<String>,
    /// A bearer token (else one is fetched with the client credentials).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "OSTORE_TOKEN",
        hide_env_values = true,
        global = true
    )]
    token: Option<String>,
    /// Client id of a credential from `ostore credentials create`.
    #[arg(long, value_name = "ID", env = "OSTORE_CLIENT_ID", global = true)]
    client_id: Option<String>,
    /// Its secret.
    #[arg(
        long,
        value_name = "SECRET",
        env = "OSTORE_CLIENT_SECRET",
        hide_env_values = true,
        global = true
    )]
    client_secret: Option<String>,
    /// A PEM certificate to trust for HTTPS (e.g. from `ostore tls self-signed`).
    #[arg(long, value_name = "FILE", env = "OSTORE_CACERT", global = true)]
    cacert: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(super) enum KvCommand {
    /// Print a key's value (binary values raw).
    Get(KeyRef),
    /// Store a value.
    Put {
        #[command(flatten)]
        key: KeyRef,
        /// The value (a string), or with --number a number.
        value: Option<String>,
        /// Store the bytes of this file as a BINARY value instead.
        #[arg(long, value_name = "FILE", conflicts_with = "value")]
        file: Option<PathBuf>,
        /// Store the value as a NUMBER.
        #[arg(long)]
        number: bool,
        /// Seconds until the key expires (default: the store's TTL).
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u64>,
        /// With --ttl: reads extend the TTL.
        #[arg(long, requires = "ttl")]
        rolling: bool,
    },
    /// Delete a key.
    Delete(KeyRef),
    /// Print every key of a partition, one per line.
    List {
        #[command(flatten)]
        partition: PartitionRef,
        /// Only keys that start with this.
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
    },
}

#[derive(Args)]
pub(super) struct PartitionRef {
    /// The store.
    #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
    store: String,
    /// The partition.
    #[arg(short, long, value_name = "PARTITION")]
    partition: String,
}

#[derive(Args)]
pub(super) struct KeyRef {
    #[command(flatten)]
    partition: PartitionRef,
    /// The key.
    key: String,
}

#[derive(Subcommand)]
pub(super) enum StoresCommand {
    /// List the stores with their TTL.
    List,
    /// Delete a store with all its partitions and keys.
    Delete { store: String },
}

#[derive(Subcommand)]
pub(super) enum PartitionsCommand {
    /// List the partitions of a store.
    List {
        #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
        store: String,
    },
    /// Delete a partition with all its keys.
    Delete {
        partition: String,
        #[arg(long, value_name = "STORE", default_value = objectstore::DEFAULT_STORE)]
        store: String,
    },
}

/// A logged-in client and the paths of its environment.
async fn connect(server: &ServerArgs) -> anyhow::Result<(Client, EnvironmentPaths)> {
    let client = Client::new(&server.server, server.cacert.as_deref())?;
    let client = match (&server.token, &server.client_id, &server.client_secret) {
        (Some(token), _, _) => client.with_token(token.clone()),
        (None, Some(id), Some(secret)) => client.login(id, secret).await?,
        _ => bail!(
            "give a token (--token / OSTORE_TOKEN) or client credentials \
             (--client-id and --client-secret / OSTORE_CLIENT_ID and OSTORE_CLIENT_SECRET)"
        ),
    };
    let env = server.environment.as_deref().context(
        "give the environment (--env / OSTORE_ENVIRONMENT; by default an application's name)",
    )?;
    Ok((client, EnvironmentPaths::new(&server.organization, env)))
}

fn key_path(paths: &EnvironmentPaths, key: &KeyRef) -> String {
    paths.key(&key.partition.store, &key.partition.partition, &key.key)
}

pub(super) async fn kv(command: KvCommand, server: ServerArgs) -> anyhow::Result<()> {
    let (client, paths) = connect(&server).await?;
    match command {
        KvCommand::Get(key) => {
            let value: KeyValue = client.get(&key_path(&paths, &key)).await?;
            let mut out = std::io::stdout().lock();
            match value.value {
                Value::Binary { binary_value } => {
                    let bytes = BASE64
                        .decode(binary_value)
                        .context("the server sent malformed base64")?;
                    out.write_all(&bytes)?;
                }
                Value::Number { number_value } => writeln!(out, "{number_value}")?,
                Value::String { string_value } => writeln!(out, "{string_value}")?,
            }
        }
        KvCommand::Put {
            key,
            value,
            file,
            number,
            ttl,
            rolling,
        } => {
            let value = match (file, value) {
                (Some(file), _) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    Value::Binary {
                        binary_value: BASE64.encode(bytes),
                    }
                }
                (None, Some(text)) if number => {
                    let n: serde_json::Number = text
                        .parse()
                        .with_context(|| format!("{text:?} is not a number"))?;
                    Value::Number {
                        number_value: n.into(),
                    }
                }
                (None, Some(text)) => Value::String { string_value: text },
                (None, None) => bail!("give a value, or --file"),
            };
            let write = ValueWrite {
                key_id: None,
                value,
                ttl_seconds: ttl.map(Some),
                rolling_ttl: ttl.map(|_| rolling),
            };
            let _: KeyValue = client
                .send_json(Method::PUT, &key_path(&paths, &key), &write)
                .await?;
        }
        KvCommand::Delete(key) => client.delete(&key_path(&paths, &key)).await?,
        KvCommand::List { partition, prefix } => {
            let mut path = paths.keys(&partition.store, &partition.partition);
            if let Some(prefix) = prefix {
                path = with_query(&path, "prefix", &prefix);
            }
            for key in client.all_pages::<KeyInfo>(&path).await? {
                println!("{}", key.key_id);
            }
        }
    }
    Ok(())
}

pub(super) async fn stores(command: StoresCommand, server: ServerArgs) -> anyhow::Result<()> {
    let (client, paths) = connect(&server).await?;
    match command {
        StoresCommand::List => {
            for store in client.all_pages::<StoreInfo>(&paths.stores()).await? {
                let ttl = match store.default_ttl_seconds {
                    Some(secs) if store.is_fixed_ttl => format!("ttl {secs}s static"),
                    Some(secs) => format!("ttl {secs}s rolling"),
                    None => "no expiry".to_string(),
                };
                println!("{}  {ttl}", store.store_id);
            }
        }
        StoresCommand::Delete { store } => client.delete(&paths.store(&store)).await?,
    }
    Ok(())
}

pub(super) async fn partitions(
    command: PartitionsCommand,
    server: ServerArgs,
) -> anyhow::Result<()> {
    let (client, paths) = connect(&server).await?;
    match command {
        PartitionsCommand::List { store } => {
            for name in client
                .all_pages::<String>(&paths.partitions(&store))
                .await?
            {
                println!("{name}");
            }
        }
        PartitionsCommand::Delete { partition, store } => {
            client.delete(&paths.partition(&store, &partition)).await?
        }
    }
    Ok(())
}

pub(super) async fn stats(
    server: ServerArgs,
    store: Option<String>,
    start: Option<String>,
    end: Option<String>,
    period: String,
) -> anyhow::Result<()> {
    let (client, paths) = connect(&server).await?;
    let mut path = with_query(&paths.stats(store.as_deref()), "period", &period);
    if let Some(start) = start {
        path = with_query(&path, "startDate", &start);
    }
    if let Some(end) = end {
        path = with_query(&path, "endDate", &end);
    }
    let points: Vec<StatsPoint> = client.get(&path).await?;
    println!(
        "{:<12} {:>10} {:>10} {:>14}",
        "date", "requests", "keys", "bytes"
    );
    for p in points {
        println!(
            "{:<12} {:>10} {:>10} {:>14}",
            p.time_stamp.get(..10).unwrap_or_default(),
            p.object_store_request_count,
            p.key_count,
            p.bytes_stored
        );
    }
    Ok(())
}
