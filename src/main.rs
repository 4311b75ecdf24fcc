//! The `aftercare` command: serve, migrate, keys, workshops, simulate, bench, model, certs,
//! config.

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
    /// Apply database migrations and the storage policy; move rows of an older storage layout.
    Migrate {
        /// Apply the schema only and leave moving old rows to `serve` (it does so while it
        /// runs, readable throughout).
        #[arg(long)]
        schema_only: bool,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The device register: trackers (IMEIs, Traccar uniqueIds) to vehicles.
    Devices {
        #[command(subcommand)]
        command: DevicesCommand,
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
    /// Issue the fleet CA, vehicle and service certificates (ECDSA P-256, PEM).
    Certs {
        #[command(subcommand)]
        command: aftercare::certs::CertsCommand,
    },
    /// Import a fleet's history from files (idempotent: a re-run imports nothing twice).
    Import {
        #[command(subcommand)]
        command: ImportCommand,
    },
    /// Print the effective configuration (TOML), secrets redacted.
    Config,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Service records from a DMS CSV export, through a job-code mapping.
    ServiceRecords {
        file: PathBuf,
        /// The job-code mapping (TOML), e.g. deploy/imports/dms-jobs.toml.
        #[arg(long)]
        jobs: PathBuf,
        /// Where refused rows go (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Vehicle profiles (make, model, model_year, powertrain, home_workshop, owner_ref,
    /// offers_consent) from a CSV.
    Profiles {
        file: PathBuf,
        /// Where refused rows go (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Diagnostic history: one fault code a row (vin, ts, code or spn+fmi, status, seq?,
    /// source?), sorted by vin and ts, the rows of one report together.
    Dtcs {
        file: PathBuf,
        /// Where refused rows go (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
    /// Telemetry: long CSV (vin,ts,signal,value) or a wide logger CSV through a mapping.
    Telemetry {
        file: PathBuf,
        /// A wide logger file's column mapping (TOML), e.g. deploy/imports/torque.toml;
        /// without one, the file is long.
        #[arg(long)]
        mapping: Option<PathBuf>,
        /// The vehicle a wide logger file is of.
        #[arg(long)]
        vin: Option<String>,
        /// Where refused rows go (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it alone on stdout (it is stored hashed and cannot be shown again).
    Create {
        #[arg(long)]
        name: String,
        /// fleet-read, advisor, planner, ingest or admin (admin implies all); repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
    },
}

#[derive(Subcommand)]
enum DevicesCommand {
    /// Register DEVICE to VIN from now (or --from) on; a re-registration moves it.
    Set {
        device: String,
        vin: String,
        /// When the tracker went into this vehicle (RFC 3339); default now.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
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
    Ingest(aftercare::bench::ingest::IngestBenchArgs),
    /// HTTP API latency under load: health baseline, offer list, slot search, accepts.
    Api(aftercare::bench::api::ApiBenchArgs),
    /// Read paths over stored telemetry (a filled database).
    Reads(aftercare::bench::reads::ReadsBenchArgs),
    /// Hostile traffic through the broker: every outcome checked, peak memory reported.
    Fuzz(aftercare::bench::fuzz::FuzzBenchArgs),
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

fn main() -> std::process::ExitCode {
    // One TLS provider for the whole process, before anything can ask for one.
    aftercare::tls::install_default_provider();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line, causes included: what a start-up script or an operator reads.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Needs no configuration (and no database): it makes the files a configuration names.
    if let Command::Certs { command } = &cli.command {
        let (cert, key) = aftercare::certs::run(command)?;
        eprintln!(
            "wrote {} and {} (the key readable by its owner only)",
            cert.display(),
            key.display()
        );
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref()).context("loading configuration")?;
    init_logging(&config);
    match cli.command {
        Command::Certs { .. } => {}
        Command::Config => print!("{}", config.redacted_toml()),
        Command::Serve => {
            tracing::debug!(config = %config.redacted_toml(), "configuration");
            let service = aftercare::service::start(config)
                .await
                .context("starting the service")?;
            shutdown_signal().await;
            tracing::info!("shutting down: committing and acknowledging what is in flight");
            service.shutdown().await?;
        }
        Command::Migrate { schema_only } => {
            use aftercare::store::{relayout, retention};
            // One connection does it all, in turn.
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            let flavor = aftercare::store::migrate(&pool).await?;
            retention::apply_policy(&pool, flavor, &(&config.storage).into()).await?;
            retention::ensure_partitions(&pool, flavor, chrono::Utc::now()).await?;
            if relayout::legacy_present(&pool).await? {
                if schema_only {
                    eprintln!(
                        "rows of the old storage layout remain; `aftercare serve` moves them \
                         while it runs (or run `aftercare migrate` without --schema-only)"
                    );
                } else {
                    eprintln!("moving rows of the old storage layout (resumable)");
                    let (_stop, never) = tokio::sync::watch::channel(false);
                    if !relayout::move_all(&pool, std::time::Duration::ZERO, &never).await? {
                        anyhow::bail!("another process is moving the old rows; try again later");
                    }
                }
            }
            eprintln!("migrated ({flavor})");
        }
        Command::Keys {
            command: KeysCommand::Create { name, scopes },
        } => {
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            aftercare::store::migrate(&pool).await?;
            let secret = aftercare::store::keys::create(&pool, &name, &scopes).await?;
            println!("{secret}");
        }
        Command::Devices {
            command: DevicesCommand::Set { device, vin, from },
        } => {
            let vin = aftercare::wire::Vin::parse(&vin).map_err(|e| anyhow::anyhow!("{e}"))?;
            if device.is_empty() || device.chars().count() > 128 {
                anyhow::bail!("DEVICE must be 1 to 128 characters");
            }
            let pool = aftercare::store::pool(&config.database.url, 1).await?;
            aftercare::store::migrate(&pool).await?;
            let from = from.unwrap_or_else(chrono::Utc::now);
            let done =
                aftercare::store::devices::register(&pool, &device, vin.as_str(), from).await?;
            eprintln!(
                "device {device} -> {vin} from {}: {done:?}",
                from.to_rfc3339()
            );
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
            aftercare::bench::ingest::ingest(&config, &args).await?;
        }
        Command::Bench {
            command: BenchCommand::Fuzz(args),
        } => {
            aftercare::bench::fuzz::fuzz(&config, &args).await?;
        }
        Command::Bench {
            command: BenchCommand::Reads(args),
        } => {
            aftercare::bench::reads::reads(&config, &args).await?;
        }
        Command::Bench {
            command: BenchCommand::Api(args),
        } => {
            aftercare::bench::api::api(&config, &args).await?;
        }
        Command::Import { command } => {
            let started = std::time::Instant::now();
            let pool = aftercare::store::pool(&config.database.url, 3).await?;
            aftercare::store::migrate(&pool).await?;
            let report = match command {
                ImportCommand::ServiceRecords {
                    file,
                    jobs,
                    rejects,
                } => {
                    let jobs = aftercare::import::service_records::JobMap::from_file(&jobs)?;
                    aftercare::import::service_records::import(
                        &pool,
                        &file,
                        &jobs,
                        rejects.as_deref(),
                    )
                    .await?
                }
                ImportCommand::Dtcs { file, rejects } => {
                    let store = std::sync::Arc::new(
                        aftercare::store::Store::open_with(pool.clone(), (&config.storage).into())
                            .await?,
                    );
                    aftercare::import::dtcs::import(
                        store,
                        &file,
                        &config.limits(),
                        rejects.as_deref(),
                    )
                    .await?
                }
                ImportCommand::Profiles { file, rejects } => {
                    aftercare::import::profiles::import(&pool, &file, rejects.as_deref()).await?
                }
                ImportCommand::Telemetry {
                    file,
                    mapping,
                    vin,
                    rejects,
                } => {
                    use aftercare::import::telemetry::{Layout, WideMapping};
                    let layout = match (mapping, vin) {
                        (None, None) => Layout::Long,
                        (Some(m), Some(vin)) => Layout::Wide {
                            vin: aftercare::wire::Vin::parse(&vin)
                                .map_err(|e| anyhow::anyhow!("--vin: {e}"))?,
                            mapping: WideMapping::from_file(&m)?,
                        },
                        _ => anyhow::bail!("a wide file needs both --mapping and --vin"),
                    };
                    let store = std::sync::Arc::new(
                        aftercare::store::Store::open_with(pool.clone(), (&config.storage).into())
                            .await?,
                    );
                    aftercare::import::telemetry::import(
                        store,
                        &file,
                        &layout,
                        &config.limits(),
                        rejects.as_deref(),
                    )
                    .await?
                }
            };
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{report} in {secs:.1} s ({:.0} rows/s)",
                report.rows as f64 / secs.max(1e-9)
            );
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
