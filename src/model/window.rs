//! Statistics over a trailing window of a series: level, mean, extremes, least-squares slope and
//! volatility. The fleet features (daily rollups) and the C-MAPSS check (engine cycles) both use
//! these, so the external check exercises the same feature code as the product.

/// Pooled moments of a window: count, sum and sum of squares of the raw values, plus extremes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub sum: f64,
    pub sumsq: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            n: 0.0,
            sum: 0.0,
            sumsq: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Moments {
    pub fn add(&mut self, n: f64, sum: f64, sumsq: f64, min: f64, max: f64) {
        self.n += n;
        self.sum += sum;
        self.sumsq += sumsq;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
    }

    pub fn add_value(&mut self, v: f64) {
        self.add(1.0, v, v * v, v, v);
    }

    pub fn mean(&self) -> f64 {
        if self.n > 0.0 {
            self.sum / self.n
        } else {
            f64::NAN
        }
    }

    /// Population standard deviation; NaN when empty.
    pub fn std(&self) -> f64 {
        if self.n <= 0.0 {
            return f64::NAN;
        }
        let mean = self.sum / self.n;
        (self.sumsq / self.n - mean * mean).max(0.0).sqrt()
    }

    pub fn min_or_nan(&self) -> f64 {
        if self.n > 0.0 {
            self.min
        } else {
            f64::NAN
        }
    }

    pub fn max_or_nan(&self) -> f64 {
        if self.n > 0.0 {
            self.max
        } else {
            f64::NAN
        }
    }
}

/// Ordinary least-squares slope of y on x. NaN with fewer than two points or no spread in x.
pub fn slope(points: impl IntoIterator<Item = (f64, f64)>) -> f64 {
    line(points).map_or(f64::NAN, |l| l.slope)
}

/// A least-squares line through a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    pub slope: f64,
    /// Where the line passes at the mean x: with the slope, its value anywhere.
    mean_x: f64,
    mean_y: f64,
    /// Points it was fitted on.
    pub n: usize,
}

impl Line {
    /// The line's value at `x`: a level with the readings' noise averaged out.
    pub fn at(&self, x: f64) -> f64 {
        self.mean_y + self.slope * (x - self.mean_x)
    }
}

/// The least-squares line of y on x, over the finite points. `None` with fewer than two
/// points or no spread in x.
pub fn line(points: impl IntoIterator<Item = (f64, f64)>) -> Option<Line> {
    // Centred on the first x: odometer km or day numbers are large, and the sums of their
    // squares would swamp the spread.
    let (mut n, mut x0, mut sx, mut sy, mut sxx, mut sxy) = (0usize, None, 0.0, 0.0, 0.0, 0.0);
    for (x, y) in points {
        if !(x.is_finite() && y.is_finite()) {
            continue;
        }
        let x = x - *x0.get_or_insert(x);
        n += 1;
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let x0 = x0?;
    if n < 2 {
        return None;
    }
    let count = n as f64;
    let var = sxx - sx * sx / count;
    if var <= 1e-12 * sxx.max(1.0) {
        return None;
    }
    Some(Line {
        slope: (sxy - sx * sy / count) / var,
        mean_x: x0 + sx / count,
        mean_y: sy / count,
        n,
    })
}

/// Summary of the last `window` values of a series (all of it when shorter).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trailing {
    pub last: f64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Per step of the series index.
    pub slope: f64,
}

pub fn trailing(series: &[f64], window: usize) -> Trailing {
    let start = series.len().saturating_sub(window.max(1));
    let w = &series[start..];
    let mut m = Moments::default();
    for &v in w {
        m.add_value(v);
    }
    Trailing {
        last: w.last().copied().unwrap_or(f64::NAN),
        mean: m.mean(),
        std: m.std(),
        min: m.min_or_nan(),
        max: m.max_or_nan(),
        slope: slope(w.iter().enumerate().map(|(i, &v)| (i as f64, v))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_through_noisy_readings_and_its_value_at_the_end() {
        // Readings alternating 0.2 above and below a line falling 0.01 a day from 80: the
        // last reading is 0.2 off, the fitted line's value at the end is on it.
        let points: Vec<(f64, f64)> = (0..13)
            .map(|i| {
                let d = 20_000.0 + 7.0 * i as f64;
                let noise = if i % 2 == 0 { 0.2 } else { -0.2 };
                (d, 80.0 - 0.01 * (d - 20_000.0) + noise)
            })
            .collect();
        let l = line(points.iter().copied()).unwrap();
        assert_eq!(l.n, 13);
        assert!((l.slope + 0.01).abs() < 2e-3, "{}", l.slope);
        let end = 20_084.0;
        assert!((l.at(end) - (80.0 - 0.84)).abs() < 0.05, "{}", l.at(end));
        assert!((points[12].1 - (80.0 - 0.84)).abs() > 0.15);
        assert!(line([(1.0, 2.0)]).is_none());
        assert!(line([(1.0, 2.0), (1.0, 3.0), (f64::NAN, 1.0)]).is_none());
    }

    #[test]
    fn slope_of_a_line_and_degenerate_inputs() {
        let s = slope((0..10).map(|i| (i as f64, 3.0 + 2.5 * i as f64)));
        assert!((s - 2.5).abs() < 1e-12);
        assert!(slope([(1.0, 2.0)]).is_nan());
        assert!(slope([(1.0, 2.0), (1.0, 3.0)]).is_nan());
        // Large x (odometer) with a small slope stays exact.
        let s = slope((0..5).map(|i| (150_000.0 + 100.0 * i as f64, 0.004 * 100.0 * i as f64)));
        assert!((s - 0.004).abs() < 1e-9, "{s}");
    }

    #[test]
    fn pooled_moments_match_the_raw_values() {
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut pooled = Moments::default();
        // Two "days" of four values each, pooled from their sums.
        for day in values.chunks(4) {
            let sum: f64 = day.iter().sum();
            let sumsq: f64 = day.iter().map(|v| v * v).sum();
            let min = day.iter().copied().fold(f64::INFINITY, f64::min);
            let max = day.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            pooled.add(4.0, sum, sumsq, min, max);
        }
        assert_eq!(pooled.mean(), 5.0);
        assert_eq!(pooled.std(), 2.0);
        assert_eq!((pooled.min, pooled.max), (2.0, 9.0));
        assert!(Moments::default().mean().is_nan());
    }

    #[test]
    fn trailing_window_uses_only_the_last_values() {
        let t = trailing(&[100.0, 1.0, 2.0, 3.0], 3);
        assert_eq!(t.last, 3.0);
        assert_eq!(t.mean, 2.0);
        assert_eq!((t.min, t.max), (1.0, 3.0));
        assert!((t.slope - 1.0).abs() < 1e-12);
        let empty = trailing(&[], 5);
        assert!(empty.last.is_nan() && empty.mean.is_nan() && empty.slope.is_nan());
    }
}
