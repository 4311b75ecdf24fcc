//! `aftercare model train | evaluate | cmapss`: the command-line side of the model. Windows
//! default to the data in the database: training takes everything but the last
//! `--holdout-days`, evaluation takes what follows the artifact's training window.

use super::artifact::{write_atomic, Artifact, ArtifactError};
use super::cmapss;
use super::dataset::Window;
use super::evaluate::{self, EvalSpec};
use super::forest::ForestParams;
use super::labels::{Truth, TruthError};
use super::learn::TrainConfig;
use super::train::{self, TrainSpec};
use crate::config::Config;
use crate::store::{self, history, StoreError};
use crate::vehicle::floor_day;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Train(#[from] train::TrainingError),
    #[error(transparent)]
    Eval(#[from] evaluate::EvalError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error(transparent)]
    Truth(#[from] TruthError),
    #[error(transparent)]
    Cmapss(#[from] cmapss::CmapssError),
    #[error("{0}")]
    Usage(String),
}

/// A date (`2026-03-01`, midnight UTC) or an RFC 3339 instant.
pub fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339: {e}"))
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ModelCommand {
    /// Train on the database's history and write the artifact and model card.
    Train(TrainArgs),
    /// Score a later, held-out window and compare the model with the rule baseline.
    Evaluate(EvaluateArgs),
    /// External check on NASA C-MAPSS FD001.
    Cmapss(CmapssArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// First snapshot (default: the first day with data).
    #[arg(long, value_parser = parse_instant)]
    pub from: Option<DateTime<Utc>>,
    /// End of the training window (default: the last data minus --holdout-days).
    #[arg(long, value_parser = parse_instant)]
    pub to: Option<DateTime<Utc>>,
    /// Data kept back for `model evaluate` when --to is not given.
    #[arg(long, default_value_t = 90)]
    pub holdout_days: i64,
    /// Validation starts here (default: three quarters into the window).
    #[arg(long, value_parser = parse_instant)]
    pub split_at: Option<DateTime<Utc>>,
    #[arg(long, value_delimiter = ',', default_value = "7,30,90")]
    pub horizons: Vec<i64>,
    #[arg(long, default_value_t = 7)]
    pub cadence_days: i64,
    /// Where the artifact, its card and current.json go.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
    /// Logistic regression only.
    #[arg(long)]
    pub no_forest: bool,
    #[arg(long, default_value_t = 60)]
    pub trees: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Default: the configured model.artifact.
    #[arg(long)]
    pub artifact: Option<PathBuf>,
    /// Default: the end of the artifact's training window.
    #[arg(long, value_parser = parse_instant)]
    pub from: Option<DateTime<Utc>>,
    /// Default: the end of the data.
    #[arg(long, value_parser = parse_instant)]
    pub to: Option<DateTime<Utc>>,
    /// Ground truth written by `aftercare simulate --truth`; service records when absent.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub cadence_days: i64,
    /// Alerts per week the workshops can take in (default: from the training data).
    #[arg(long)]
    pub k: Option<usize>,
    /// Where the report (markdown and JSON) goes.
    #[arg(long, default_value = "models")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct CmapssArgs {
    /// Default: datasets/cmapss here, else ../shared/datasets/cmapss beside this directory or a parent.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Also write the report (markdown and JSON) into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub async fn run(config: &Config, command: ModelCommand) -> Result<(), CliError> {
    match command {
        ModelCommand::Train(args) => train_command(config, args).await,
        ModelCommand::Evaluate(args) => evaluate_command(config, args).await,
        ModelCommand::Cmapss(args) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            let data = args.data.or_else(|| cmapss::locate(&cwd)).ok_or_else(|| {
                CliError::Usage(
                    "C-MAPSS FD001 not found in datasets/cmapss or ../shared/datasets/cmapss; pass --data DIR".into(),
                )
            })?;
            let report = cmapss::run(&data, &cmapss::Params::default())?;
            let md = report.markdown();
            println!("{md}");
            if let Some(dir) = args.out {
                write_atomic(&dir.join("cmapss-fd001.md"), md.as_bytes())?;
                let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
                write_atomic(&dir.join("cmapss-fd001.json"), &json)?;
            }
            Ok(())
        }
    }
}

async fn data_range(pool: &sqlx::PgPool) -> Result<(DateTime<Utc>, DateTime<Utc>), CliError> {
    history::data_range(pool)
        .await?
        .ok_or_else(|| CliError::Usage("no odometer data in the database to train on".into()))
}

async fn train_command(config: &Config, args: TrainArgs) -> Result<(), CliError> {
    let pool = store::pool(&config.database.url, 4).await?;
    store::migrate(&pool).await?;
    let (from, to) = match (args.from, args.to) {
        (Some(f), Some(t)) => (f, t),
        (f, t) => {
            let (start, end) = data_range(&pool).await?;
            (
                f.unwrap_or(start),
                t.unwrap_or(end - Duration::days(args.holdout_days)),
            )
        }
    };
    let (from, to) = (floor_day(from), floor_day(to));
    let split_at = args
        .split_at
        .unwrap_or_else(|| floor_day(from + (to - from) * 3 / 4));
    let spec = TrainSpec {
        window: Window {
            from,
            to,
            cadence_days: args.cadence_days,
        },
        split_at,
        horizons: args.horizons,
        config: TrainConfig {
            forest: (!args.no_forest).then(|| ForestParams {
                trees: args.trees,
                seed: args.seed,
                ..ForestParams::default()
            }),
            seed: args.seed,
            refit: true,
            ..TrainConfig::default()
        },
        show_progress: true,
    };
    eprintln!(
        "training on {} to {} (validation from {}), snapshots every {} days",
        from.date_naive(),
        to.date_naive(),
        split_at.date_naive(),
        args.cadence_days
    );
    let started = std::time::Instant::now();
    let artifact = train::train(&pool, &spec).await?;
    let path = artifact.save(&args.out)?;
    println!("{}", artifact.card());
    eprintln!(
        "wrote {} (and current.json, current.md) in {:.1} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn evaluate_command(config: &Config, args: EvaluateArgs) -> Result<(), CliError> {
    let path = args
        .artifact
        .unwrap_or_else(|| config.model.artifact.clone());
    let artifact = Artifact::load(&path)?;
    let pool = store::pool(&config.database.url, 4).await?;
    store::migrate(&pool).await?;
    let from = args.from.unwrap_or(artifact.training.window.to);
    let to = match args.to {
        Some(t) => t,
        None => data_range(&pool).await?.1,
    };
    if from >= to {
        return Err(CliError::Usage(format!(
            "nothing to evaluate: window {from} to {to} is empty"
        )));
    }
    if from < artifact.training.window.to {
        eprintln!(
            "warning: the window starts before the end of training ({}); figures overlap the training data",
            artifact.training.window.to.date_naive()
        );
    }
    let (truth, truth_name) = match &args.truth {
        Some(p) => {
            let t = Truth::read(p)?;
            if t.unknown_components > 0 {
                eprintln!(
                    "warning: {} ground-truth lines name components this build does not know",
                    t.unknown_components
                );
            }
            (Some(t), format!("ground truth {}", p.display()))
        }
        None => (None, "service records (repair, preventive)".to_owned()),
    };
    let spec = EvalSpec {
        window: Window {
            from: floor_day(from),
            to,
            cadence_days: args.cadence_days,
        },
        truth,
        truth_name,
        k: args.k,
        lead_lookback_days: 90,
        min_lead_days: 7.0,
        show_progress: true,
    };
    let version = artifact.version.clone();
    let report = evaluate::evaluate(&pool, artifact, &spec).await?;
    let md = report.markdown();
    println!("{md}");
    let stem = format!(
        "evaluation-{version}-{}-{}",
        spec.window.from.format("%Y%m%d"),
        spec.window.to.format("%Y%m%d")
    );
    write_atomic(&args.out.join(format!("{stem}.md")), md.as_bytes())?;
    let json = serde_json::to_vec_pretty(&report).unwrap_or_default();
    write_atomic(&args.out.join(format!("{stem}.json")), &json)?;
    eprintln!("wrote {}", args.out.join(format!("{stem}.md")).display());
    Ok(())
}
