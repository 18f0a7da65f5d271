//! Command line: `serve`, `check`, `status`, `keygen`, `token`, `render`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::app::{self, ServeOptions};
use crate::auth::client_token::{self, KeySet};
use crate::clientconfig::{self, ClientConfigKind, RenderInput};
use crate::config::{ClientAuthMode, Config, Connector, ConnectorId};

/// An authenticating, streaming OCI registry proxy.
#[derive(Debug, Parser)]
#[command(name = "oci-connector", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// Settings file.
        #[arg(long, short)]
        config: PathBuf,
        /// Take over the listening sockets of a running instance (send it SIGQUIT after).
        #[arg(long, short)]
        upgrade: bool,
        /// Socket for the zero-downtime upgrade hand-over.
        #[arg(long)]
        upgrade_sock: Option<String>,
        /// PID file.
        #[arg(long)]
        pid_file: Option<String>,
    },
    /// Validate the configuration and list each connector with its proxy address.
    Check {
        /// Settings file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show each connector's conditions from a running proxy's admin API, like `kubectl get`.
    Status {
        /// Settings file (its `admin.listen` says where the admin API is).
        #[arg(long, short)]
        config: PathBuf,
        /// `table` (NAME NAMESPACE ADDRESS READY REASON AGE) or `json` (the objects).
        #[arg(long, short, value_enum, default_value_t = StatusOutput::Table)]
        output: StatusOutput,
    },
    /// Create a client-token signing key file (owner-only permissions).
    Keygen {
        /// Where to write the key; an existing file is never overwritten.
        file: PathBuf,
    },
    /// Print a signed client token.
    Token {
        /// Settings file.
        #[arg(long, short)]
        config: PathBuf,
        /// What the token grants.
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Render a client configuration (registry-config, dockerd, buildkitd, containerd, registries-conf).
    Render {
        /// Which configuration.
        kind: ClientConfigKind,
        /// Settings file.
        #[arg(long, short)]
        config: PathBuf,
        /// What the embedded token grants.
        #[command(flatten)]
        grant: GrantArgs,
        /// Write the conventional file name(s) into this directory instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Output format of `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StatusOutput {
    /// A `kubectl get`-like table.
    Table,
    /// The connector objects as JSON.
    Json,
}

/// What a client token grants.
#[derive(Debug, clap::Args)]
pub struct GrantArgs {
    /// Connectors as NS/NAME, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub connector: Vec<String>,
    /// Grant push as well as pull.
    #[arg(long)]
    pub push: bool,
    /// Lifetime, e.g. 30m, 2h.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// Who the token is for (shown as the username in config.json).
    #[arg(long, default_value = "oci-connector")]
    pub subject: String,
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, upgrade, upgrade_sock, pid_file } => {
            app::serve(&config, ServeOptions { upgrade, upgrade_sock, pid_file })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => check(&config),
        Command::Status { config, output } => status(&config, output),
        Command::Keygen { file } => {
            client_token::generate_key_file(&file)?;
            eprintln!("wrote {}", file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { config, grant } => {
            let config = app::load_config(&config)?;
            let (_, token) = mint(&config, &grant)?;
            println!("{}", token.expose());
            Ok(ExitCode::SUCCESS)
        }
        Command::Render { kind, config, grant, out } => render(kind, &config, &grant, out.as_deref()),
    }
}

fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = app::load_config(path)?;
    let s = &config.settings;
    println!(
        "configuration OK: {} connector(s), resolver {:?}, listen {}",
        config.connectors.len(),
        s.resolver,
        s.listen
    );
    // What `serve` would log about the receive buffer on this machine.
    let (_, note) =
        crate::proxy::tcp::usable_receive_buffer(s.upstream.receive_buffer, crate::proxy::tcp::rmem_max());
    if let Some(note) = note {
        println!("note: {note}");
    }
    for c in &config.connectors {
        let auth = if c.credentials.is_some() { "credentials" } else { "anonymous" };
        println!("{}\t{}\t{}\t{}", c.id, c.address, auth, clientconfig::http_address(s, c));
    }
    Ok(ExitCode::SUCCESS)
}

fn status(path: &Path, output: StatusOutput) -> anyhow::Result<ExitCode> {
    let admin = crate::admin::address_from_settings(path)?;
    let list = crate::admin::fetch_connectors(admin)?;
    match output {
        StatusOutput::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        StatusOutput::Table => print!("{}", crate::status::table(&list, std::time::SystemTime::now())),
    }
    if !list.reload.errors.is_empty() {
        eprintln!(
            "warning: the last reload failed at {}; generation {} keeps serving:",
            list.reload.last_attempt_time.as_deref().unwrap_or("?"),
            list.reload.generation
        );
        for e in &list.reload.errors {
            eprintln!("  {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves `--connector` and mints a token (`None` when client auth is off).
fn mint<'a>(
    config: &'a Config,
    grant: &GrantArgs,
) -> anyhow::Result<(Vec<&'a Connector>, crate::secret::Secret)> {
    let mut selected = Vec::new();
    for spec in &grant.connector {
        let id = parse_id(spec)?;
        let c = config.connectors.iter().find(|c| c.id == id).with_context(|| {
            format!("connector {id} is not in the configuration (hint: `oci-connector check` lists them)")
        })?;
        selected.push(c);
    }
    let auth = &config.settings.client_auth;
    if auth.mode != ClientAuthMode::Token {
        bail!("clientAuth.mode is none: there are no client tokens to mint (hint: set clientAuth.mode: token and keyFiles)");
    }
    let keys: KeySet = client_token::load_keys(&auth.key_files)?;
    let ids: Vec<ConnectorId> = selected.iter().map(|c| c.id.clone()).collect();
    let token = keys.mint(&grant.subject, &ids, grant.push, grant.ttl);
    Ok((selected, token))
}

fn render(
    kind: ClientConfigKind,
    config: &Path,
    grant: &GrantArgs,
    out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let config = app::load_config(config)?;
    let (connectors, token) = match config.settings.client_auth.mode {
        ClientAuthMode::Token => {
            let (c, t) = mint(&config, grant)?;
            (c, Some(t))
        }
        ClientAuthMode::None => {
            let mut c = Vec::new();
            for spec in &grant.connector {
                let id = parse_id(spec)?;
                c.push(
                    config
                        .connectors
                        .iter()
                        .find(|c| c.id == id)
                        .with_context(|| format!("connector {id} is not in the configuration"))?,
                );
            }
            (c, None)
        }
    };
    let input = RenderInput {
        settings: &config.settings,
        connectors,
        subject: grant.subject.clone(),
        token,
        push: grant.push,
    };
    let rendered = clientconfig::render(kind, &input)?;
    match out {
        None => {
            for (_, text) in &rendered.files {
                print!("{text}");
            }
        }
        Some(dir) => {
            for (rel, text) in &rendered.files {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .with_context(|| format!("cannot create {}", parent.display()))?;
                }
                write_private(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a rendered file owner-only: `config.json` and `hosts.toml` carry a token.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(text.as_bytes())
}

fn parse_id(spec: &str) -> anyhow::Result<ConnectorId> {
    match spec.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok(ConnectorId::new(ns, name))
        }
        _ => bail!("--connector {spec:?}: expected NAMESPACE/NAME"),
    }
}
