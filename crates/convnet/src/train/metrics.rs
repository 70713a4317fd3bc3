//! Keras's metrics, reported as Keras reports them: the running mean over the epoch of
//! each sample's value (weighted by sample weights when there are any).

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// The built-in metrics, by Keras's names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricFn {
    /// `"accuracy"`: binary, sparse or categorical accuracy, picked from the shapes of
    /// the targets and predictions on first use, as Keras 3 picks it.
    Accuracy,
    /// `"categorical_accuracy"`: whether the argmax of the prediction is the one-hot
    /// target's class.
    CategoricalAccuracy,
    /// `"sparse_categorical_accuracy"`: whether the argmax of the prediction is the target
    /// class index.
    SparseCategoricalAccuracy,
    /// `"binary_accuracy"`: whether the prediction, thresholded at 0.5, equals the target.
    BinaryAccuracy,
    /// `"top_k_categorical_accuracy"`: whether the target class is among the `k` highest
    /// predictions.
    TopKCategoricalAccuracy {
        /// How many of the highest predictions count (Keras's default 5).
        k: usize,
    },
    /// `"mean_absolute_error"` (`mae`).
    MeanAbsoluteError,
    /// `"mean_squared_error"` (`mse`).
    MeanSquaredError,
    /// A plain running mean of values given to [`Metric::add`] (the loss).
    Mean,
}

/// A metric and its running total.
#[derive(Clone, Debug)]
pub struct Metric {
    /// The name it is reported under (`accuracy`, `mae`, …) as the user wrote it.
    pub name: String,
    /// What it computes.
    pub kind: MetricFn,
    total: f64,
    count: f64,
}

impl Metric {
    /// A metric by Keras name or alias (`"accuracy"`, `"mae"`, …).
    pub fn new(name: &str) -> Result<Self> {
        let kind = match name {
            "accuracy" | "acc" => MetricFn::Accuracy,
            "categorical_accuracy" => MetricFn::CategoricalAccuracy,
            "sparse_categorical_accuracy" => MetricFn::SparseCategoricalAccuracy,
            "binary_accuracy" => MetricFn::BinaryAccuracy,
            "top_k_categorical_accuracy" => MetricFn::TopKCategoricalAccuracy { k: 5 },
            "mean_absolute_error" | "mae" => MetricFn::MeanAbsoluteError,
            "mean_squared_error" | "mse" => MetricFn::MeanSquaredError,
            other => {
                return Err(Error::Config {
                    layer: "compile".into(),
                    class: "metrics".into(),
                    field: "metrics".into(),
                    message: format!(
                        "unknown metric '{other}' (known: accuracy, categorical_accuracy, sparse_categorical_accuracy, \
                         binary_accuracy, top_k_categorical_accuracy, mean_absolute_error, mean_squared_error)"
                    ),
                })
            }
        };
        Ok(Metric {
            name: name.to_string(),
            kind,
            total: 0.0,
            count: 0.0,
        })
    }

    /// A running mean of values given directly (the loss tracker).
    pub fn mean(name: &str) -> Self {
        Metric {
            name: name.to_string(),
            kind: MetricFn::Mean,
            total: 0.0,
            count: 0.0,
        }
    }

    /// Clears the running total, for a new epoch or evaluation.
    pub fn reset(&mut self) {
        self.total = 0.0;
        self.count = 0.0;
    }

    /// The running total and count, to save part way through an epoch.
    pub(crate) fn running(&self) -> (f64, f64) {
        (self.total, self.count)
    }

    /// Puts back what [`Metric::running`] returned.
    pub(crate) fn set_running(&mut self, (total, count): (f64, f64)) {
        self.total = total;
        self.count = count;
    }

    /// The running mean so far (0 before any update).
    pub fn result(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.total / self.count
        }
    }

    /// Adds `value` with `weight` (for the loss: the batch loss, weighted by batch size).
    pub fn add(&mut self, value: f64, weight: f64) {
        self.total += value * weight;
        self.count += weight;
    }

    /// Adds a batch's per-sample values.
    pub fn update(
        &mut self,
        y_true: &Tensor,
        y_pred: &Tensor,
        sample_weight: Option<&[f32]>,
    ) -> Result<()> {
        if self.kind == MetricFn::Accuracy {
            self.kind = resolve_accuracy(y_true, y_pred);
        }
        let values = per_sample(self.kind, y_true, y_pred)
            .map_err(|m| Error::data(format!("metric {}: {m}", self.name)))?;
        for (i, v) in values.iter().enumerate() {
            let w = sample_weight.map_or(1.0, |w| w[i] as f64);
            self.add(*v, w);
        }
        Ok(())
    }
}

/// Keras 3's choice for "accuracy": binary when the prediction has one unit per sample,
/// sparse when the targets are class indices, categorical otherwise.
fn resolve_accuracy(y_true: &Tensor, y_pred: &Tensor) -> MetricFn {
    let (t, p) = (y_true.shape(), y_pred.shape());
    if p.last() == Some(&1) {
        MetricFn::BinaryAccuracy
    } else if t.len() + 1 == p.len() || (t.len() == p.len() && t.last() == Some(&1)) {
        MetricFn::SparseCategoricalAccuracy
    } else {
        MetricFn::CategoricalAccuracy
    }
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// Each sample's value of the metric.
fn per_sample(
    kind: MetricFn,
    y_true: &Tensor,
    y_pred: &Tensor,
) -> std::result::Result<Vec<f64>, String> {
    let batch = *y_pred.shape().first().ok_or("empty predictions")?;
    let classes = *y_pred.shape().last().ok_or("empty predictions")?;
    if batch == 0 || classes == 0 {
        return Ok(vec![]);
    }
    let rows = y_pred.len() / classes;
    let per_sample_rows = rows / batch;
    let (t, p) = (y_true.data(), y_pred.data());
    let sparse = matches!(kind, MetricFn::SparseCategoricalAccuracy);
    let expected_true = if sparse { rows } else { y_pred.len() };
    if t.len() != expected_true {
        return Err(format!(
            "targets of shape {:?} do not fit predictions of shape {:?}",
            y_true.shape(),
            y_pred.shape()
        ));
    }
    if kind == MetricFn::Mean {
        return Err("a mean metric takes its values from add()".into());
    }
    let row_value = |r: usize| -> f64 {
        let pr = &p[r * classes..(r + 1) * classes];
        let tr = if sparse {
            &t[r..r + 1]
        } else {
            &t[r * classes..(r + 1) * classes]
        };
        let mean = |f: &dyn Fn(f32, f32) -> f64| {
            tr.iter().zip(pr).map(|(&a, &b)| f(a, b)).sum::<f64>() / classes as f64
        };
        match kind {
            MetricFn::SparseCategoricalAccuracy => {
                (tr[0] as usize == argmax(pr) && tr[0] >= 0.0) as u8 as f64
            }
            MetricFn::CategoricalAccuracy | MetricFn::Accuracy => {
                (argmax(tr) == argmax(pr)) as u8 as f64
            }
            MetricFn::BinaryAccuracy => mean(&|a, b| ((b > 0.5) as u8 as f32 == a) as u8 as f64),
            MetricFn::TopKCategoricalAccuracy { k } => {
                let target = pr[argmax(tr)];
                let above = pr.iter().filter(|&&v| v > target).count();
                (above < k) as u8 as f64
            }
            MetricFn::MeanAbsoluteError => mean(&|a, b| (a as f64 - b as f64).abs()),
            MetricFn::MeanSquaredError => mean(&|a, b| (a as f64 - b as f64).powi(2)),
            MetricFn::Mean => unreachable!("checked above"),
        }
    };
    Ok((0..batch)
        .map(|b| {
            (b * per_sample_rows..(b + 1) * per_sample_rows)
                .map(row_value)
                .sum::<f64>()
                / per_sample_rows as f64
        })
        .collect())
}
