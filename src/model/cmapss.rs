//! External check on NASA C-MAPSS FD001 (turbofan engines run to failure): the fleet model's
//! window features and learners, applied to public data with published results.
//!
//! - Classification: "fails within 30 cycles", trained on every cycle of the training engines
//!   through `learn::train_binary` (validation: every fifth engine, so no engine is on both
//!   sides), judged at each test engine's last cycle: ROC-AUC, precision, recall, F1.
//! - Remaining life: a forest of linfa-trees on the same windowed features, split on remaining
//!   life binned by 5 cycles and valued with the mean remaining life of each node (capped at
//!   125, as is customary), RMSE against RUL_FD001.

use super::forest::{Forest, ForestParams, Sampling};
use super::learn::{self, Split, TrainConfig};
use super::metrics;
use super::window::trailing;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The 14 sensors that vary in FD001 (1-based numbers as in the readme); the other seven and
/// the operational settings are constant in this one-condition subset.
pub const SENSORS: [usize; 14] = [2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21];
pub const HORIZON_CYCLES: f64 = 30.0;
pub const RUL_CAP: f64 = 125.0;
const LONG_WINDOW: usize = 30;
const SHORT_WINDOW: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum CmapssError {
    #[error("cannot read {path}: {source} (the dataset lives in datasets/cmapss)")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Train(#[from] learn::TrainError),
    #[error(transparent)]
    Forest(#[from] super::forest::ForestError),
}

/// One engine's cycles: each row holds the 21 sensor readings (index 0 = sensor 1).
#[derive(Debug, Clone)]
pub struct Engine {
    pub unit: u32,
    pub sensors: Vec<[f64; 21]>,
}

pub struct Data {
    pub train: Vec<Engine>,
    pub test: Vec<Engine>,
    /// True remaining life of each test engine after its last cycle.
    pub test_rul: Vec<f64>,
}

fn read(path: &Path) -> Result<String, CmapssError> {
    std::fs::read_to_string(path).map_err(|source| CmapssError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn parse_engines(path: &Path) -> Result<Vec<Engine>, CmapssError> {
    let text = read(path)?;
    let mut engines: Vec<Engine> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let err = |reason: String| CmapssError::Parse {
            path: path.display().to_string(),
            line: i + 1,
            reason,
        };
        if line.trim().is_empty() {
            continue;
        }
        let values: Vec<f64> = line
            .split_whitespace()
            .map(|v| v.parse::<f64>().map_err(|e| err(format!("{v:?}: {e}"))))
            .collect::<Result<_, _>>()?;
        if values.len() != 26 {
            return Err(err(format!("expected 26 columns, found {}", values.len())));
        }
        let unit = values[0] as u32;
        let mut sensors = [0.0; 21];
        sensors.copy_from_slice(&values[5..26]);
        match engines.last_mut() {
            Some(e) if e.unit == unit => e.sensors.push(sensors),
            _ => engines.push(Engine {
                unit,
                sensors: vec![sensors],
            }),
        }
    }
    Ok(engines)
}

/// Where the dataset is: `AFTERCARE_CMAPSS_DIR`, else `datasets/cmapss` in the repository,
/// else `shared/datasets/cmapss` beside it or beside one of its parents.
pub fn locate(repo: &Path) -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("AFTERCARE_CMAPSS_DIR") {
        return Some(dir.into());
    }
    // The repository carries a copy (public domain), so CI finds it wherever it clones; a
    // shared datasets folder beside the checkout is used when the copy is absent.
    std::iter::once(repo.join("datasets/cmapss"))
        .chain(
            repo.ancestors()
                .skip(1)
                .map(|a| a.join("shared/datasets/cmapss")),
        )
        .find(|d| d.join("train_FD001.txt").is_file())
}

pub fn load(dir: &Path) -> Result<Data, CmapssError> {
    let train = parse_engines(&dir.join("train_FD001.txt"))?;
    let test = parse_engines(&dir.join("test_FD001.txt"))?;
    let rul_path = dir.join("RUL_FD001.txt");
    let test_rul = read(&rul_path)?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            l.trim().parse::<f64>().map_err(|e| CmapssError::Parse {
                path: rul_path.display().to_string(),
                line: i + 1,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if test_rul.len() != test.len() {
        return Err(CmapssError::Shape(format!(
            "{} test engines but {} remaining-life values",
            test.len(),
            test_rul.len()
        )));
    }
    Ok(Data {
        train,
        test,
        test_rul,
    })
}

pub fn feature_names() -> Vec<String> {
    let mut names = vec!["cycle".to_owned()];
    for s in SENSORS {
        for stat in ["mean5", "mean30", "std30", "slope30", "slope_all"] {
            names.push(format!("s{s}.{stat}"));
        }
    }
    names
}

/// The varying sensors of an engine as series, one per sensor in `SENSORS` order.
fn sensor_series(engine: &Engine) -> Vec<Vec<f64>> {
    SENSORS
        .iter()
        .map(|&s| engine.sensors.iter().map(|row| row[s - 1]).collect())
        .collect()
}

/// Features after cycle `upto` (0-based), from cycles 0..=upto only.
fn features(series: &[Vec<f64>], upto: usize, out: &mut Vec<f64>) {
    out.clear();
    out.push((upto + 1) as f64);
    for s in series {
        let seen = &s[..=upto.min(s.len().saturating_sub(1))];
        let short = trailing(seen, SHORT_WINDOW);
        let long = trailing(seen, LONG_WINDOW);
        let all = trailing(seen, seen.len());
        out.extend([short.mean, long.mean, long.std, long.slope, all.slope]);
    }
}

/// Every cycle of every engine as a feature row, with the remaining life after it and the
/// engine's unit number.
fn training_rows(engines: &[Engine]) -> (Array2<f64>, Vec<f64>, Vec<u32>) {
    let p = feature_names().len();
    let (mut flat, mut rul, mut unit) = (Vec::new(), Vec::new(), Vec::new());
    let mut row = Vec::with_capacity(p);
    for e in engines {
        let series = sensor_series(e);
        let n = e.sensors.len();
        for i in 0..n {
            features(&series, i, &mut row);
            flat.extend_from_slice(&row);
            rul.push((n - 1 - i) as f64);
            unit.push(e.unit);
        }
    }
    let rows = rul.len();
    (
        Array2::from_shape_vec((rows, p), flat).unwrap_or_else(|_| Array2::zeros((0, p))),
        rul,
        unit,
    )
}

fn last_cycle_rows(engines: &[Engine]) -> Array2<f64> {
    let p = feature_names().len();
    let mut x = Array2::zeros((engines.len(), p));
    let mut row = Vec::with_capacity(p);
    for (i, e) in engines.iter().enumerate() {
        features(
            &sensor_series(e),
            e.sensors.len().saturating_sub(1),
            &mut row,
        );
        x.row_mut(i).iter_mut().zip(&row).for_each(|(d, s)| *d = *s);
    }
    x
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub classifier: TrainConfig,
    pub rul_forest: ForestParams,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            classifier: TrainConfig::default(),
            rul_forest: ForestParams {
                trees: 40,
                max_depth: 10,
                min_leaf: 5.0,
                feature_fraction: 0.5,
                sampling: Sampling::Bootstrap { fraction: 0.25 },
                seed: 11,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub train_engines: usize,
    pub test_engines: usize,
    pub learner: String,
    pub threshold: f64,
    pub test_positives: usize,
    pub roc_auc: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Remaining-life estimate at each test engine's last cycle against RUL_FD001.
    pub rul_rmse: f64,
    /// The same with the true remaining life capped at 125 as well.
    pub rul_rmse_capped_truth: f64,
}

pub fn run(dir: &Path, params: &Params) -> Result<Report, CmapssError> {
    let data = load(dir)?;
    let (xa, rul_a, units) = training_rows(&data.train);
    // Validation: every fifth engine, whole.
    let (valid, train): (Vec<usize>, Vec<usize>) =
        (0..units.len()).partition(|&i| units[i] % 5 == 0);
    let soon = |r: &f64| *r <= HORIZON_CYCLES;
    let pick = |rows: &[usize]| {
        let x = xa.select(ndarray::Axis(0), rows);
        let y: Vec<bool> = rows.iter().map(|&i| soon(&rul_a[i])).collect();
        (x, y)
    };
    let (xt, yt) = pick(&train);
    let (xv, yv) = pick(&valid);
    let model = learn::train_binary(
        Split {
            x: xt.view(),
            y: &yt,
        },
        Split {
            x: xv.view(),
            y: &yv,
        },
        &params.classifier,
    )?;
    let x_test = last_cycle_rows(&data.test);
    let y_test: Vec<bool> = data.test_rul.iter().map(soon).collect();
    let scores: Vec<f64> = x_test
        .rows()
        .into_iter()
        .map(|r| model.probability(&r.to_vec()))
        .collect();
    let confusion = metrics::Confusion::at(&scores, &y_test, model.threshold);

    // Remaining life: all training engines (the forest needs no validation split).
    let prep = learn::Prep::fit(xa.view());
    let xa = prep.impute_matrix(xa.view());
    let x_test_imputed = prep.impute_matrix(x_test.view());
    let capped: Vec<f64> = rul_a.iter().map(|r| r.min(RUL_CAP)).collect();
    let bins: Vec<usize> = capped.iter().map(|r| (r / 5.0) as usize).collect();
    let forest = Forest::fit(xa.view(), &bins, &capped, &params.rul_forest)?;
    let predicted: Vec<f64> = x_test_imputed
        .rows()
        .into_iter()
        .map(|r| forest.predict(&r.to_vec()))
        .collect();
    let truth_capped: Vec<f64> = data.test_rul.iter().map(|r| r.min(RUL_CAP)).collect();
    Ok(Report {
        train_engines: data.train.len(),
        test_engines: data.test.len(),
        learner: model.learner.name().to_owned(),
        threshold: model.threshold,
        test_positives: y_test.iter().filter(|&&y| y).count(),
        roc_auc: metrics::roc_auc(&scores, &y_test).unwrap_or(f64::NAN),
        precision: confusion.precision(),
        recall: confusion.recall(),
        f1: confusion.f1(),
        rul_rmse: metrics::rmse(&predicted, &data.test_rul),
        rul_rmse_capped_truth: metrics::rmse(&predicted, &truth_capped),
    })
}

impl Report {
    pub fn markdown(&self) -> String {
        format!(
            "# NASA C-MAPSS FD001: external check\n\n\
             {train} training engines (run to failure), {test} test engines cut off before failure.\n\
             Features: for each of the 14 varying sensors, mean of the last 5 and 30 cycles, \
             standard deviation and least-squares slope over 30 cycles, slope since the first \
             cycle; and the cycle count.\n\n\
             ## Fails within {h} cycles (at each test engine's last cycle)\n\n\
             | learner | threshold | positives | ROC-AUC | precision | recall | F1 |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n\
             | {learner} | {thr:.3} | {pos} / {test} | {auc:.4} | {prec:.3} | {rec:.3} | {f1:.3} |\n\n\
             ## Remaining useful life\n\n\
             | estimate | RMSE (cycles) |\n| --- | ---: |\n\
             | forest of linfa-trees, windowed features, RUL capped at {cap} | **{rmse:.2}** |\n\
             | the same, truth also capped at {cap} | {rmse_c:.2} |\n\
             | published: LSTM (Zheng et al. 2017) | 16.14 |\n\
             | published: deep CNN (Li et al. 2018) | 12.61 |\n",
            train = self.train_engines,
            test = self.test_engines,
            h = HORIZON_CYCLES,
            learner = self.learner,
            thr = self.threshold,
            pos = self.test_positives,
            auc = self.roc_auc,
            prec = self.precision,
            rec = self.recall,
            f1 = self.f1,
            cap = RUL_CAP,
            rmse = self.rul_rmse,
            rmse_c = self.rul_rmse_capped_truth,
        )
    }
}
