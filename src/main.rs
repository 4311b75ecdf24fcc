//! The `aftercare` command: serve, migrate, keys, workshops, simulate, bench, model.

use aftercare::config::{Config, LogFormat};
use aftercare::store::keys::Scope;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "aftercare",
    version,
    about = "Connected-car data in, booked workshop visits out"
)]
struct Cli {
    /// TOML configuration file (also AFTERCARE_CONFIG); environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingest and the API until SIGINT/SIGTERM.
    Serve,
    /// Apply database migrations.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Workshops, job catalogue and parts.
    Workshops {
        #[command(subcommand)]
        command: WorkshopsCommand,
    },
    /// Publish a synthetic fleet through the broker.
    Simulate(aftercare::simulator::SimulateArgs),
    /// End-to-end benchmarks.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Failure-risk model: train, evaluate, external check.
    Model {
        #[command(subcommand)]
        command: aftercare::model::cli::ModelCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it alone on stdout (it is stored hashed and cannot be shown again).
    Create {
        #[arg(long)]
        name: String,
        /// fleet-read, advisor, planner or admin (admin implies all); repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
}

#[derive(Subcommand)]
enum WorkshopsCommand {
    /// Load a seed file (parts, jobs, workshops); loading it again changes nothing.
    Load { file: PathBuf },
    /// The demand preview made as of a past date against the work that then arrived.
    Backtest {
        /// The date the preview is made on (YYYY-MM-DD, UTC midnight).
        #[arg(long)]
        as_of: chrono::NaiveDate,
        #[arg(long, default_value_t = 4)]
        weeks: i64,
        /// The model that scores each vehicle's history up to that date.
        #[arg(long, default_value = "models/current.json")]
        artifact: PathBuf,
        /// Also write every (workshop, skill, week) cell as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Broker limit vs full pipeline vs database COPY limit, on the same messages.
    Ingest(aftercare::bench::IngestBenchArgs),
    /// HTTP API latency under load: health baseline, offer list, slot search, accepts.
    Api(aftercare::bench_api::ApiBenchArgs),
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    init_logging(&config);
    match cli.command {
        Command::Serve => {
            let service = aftercare::service::start(config).await?;
            shutdown_signal().await;
            tracing::info!("shutting down: committing and acknowledging what is in flight");
            service.shutdown().await?;
        }
        Command::Migrate => {
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            let flavor = aftercare::store::migrate(&pool).await?;
            eprintln!("migrated ({flavor:?})");
        }
        Command::Keys {
            command: KeysCommand::Create { name, scopes },
        } => {
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            aftercare::store::migrate(&pool).await?;
            let secret = aftercare::store::keys::create(&pool, &name, &scopes).await?;
            println!("{secret}");
        }
        Command::Workshops {
            command:
                WorkshopsCommand::Backtest {
                    as_of,
                    weeks,
                    artifact,
                    out,
                },
        } => {
            let pool = aftercare::store::pool(&config.database.url, 2).await?;
            aftercare::store::migrate(&pool).await?;
            let report = aftercare::backtest::run(&pool, &artifact, as_of, weeks).await?;
            println!("{}", report.summary());
            if let Some(out) = out {
                std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
        }
        Command::Workshops {
            command: WorkshopsCommand::Load { file },
        } => {
            let seed = aftercare::capacity::Seed::from_file(&file)?;
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            aftercare::store::migrate(&pool).await?;
            aftercare::store::capacity::load_seed(&pool, &seed).await?;
            eprintln!(
                "loaded {} parts, {} jobs, {} workshops",
                seed.parts.len(),
                seed.jobs.len(),
                seed.workshops.len()
            );
        }
        Command::Simulate(args) => {
            let summary = aftercare::simulator::run(&config, &args).await?;
            eprintln!("{summary}");
        }
        Command::Bench {
            command: BenchCommand::Ingest(args),
        } => {
            aftercare::bench::ingest(&config, &args).await?;
        }
        Command::Bench {
            command: BenchCommand::Api(args),
        } => {
            aftercare::bench_api::api(&config, &args).await?;
        }
        Command::Model { command } => {
            aftercare::model::cli::run(&config, command).await?;
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
