//! `cargo xtask bench`'s rows: the table it prints and the `--json` document
//! ([`BenchReport`], docs/reports/bench.md).

use std::fmt::Write as _;

use serde_json::Value;

/// One measurement against its budget.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    pub(super) measure: String,
    pub(super) value: f64,
    pub(super) unit: &'static str,
    /// Shown instead of `value unit` when set (e.g. `max 37, mean 30.5 over 4 calls`).
    pub(super) shown: Option<String>,
    pub(super) budget: Option<f64>,
    /// The budget is a floor (calls per second), not a ceiling.
    pub(super) at_least: bool,
    /// A line shown under the row (which events invoked a callback).
    pub(super) note: Option<String>,
    /// More fields for `--json` (`kind`, `driver`, ...).
    pub(super) extra: Value,
}

impl Row {
    pub(super) fn over(&self) -> bool {
        self.budget.is_some_and(|b| {
            if self.at_least {
                self.value < b
            } else {
                self.value > b
            }
        })
    }

    pub(super) fn verdict(&self) -> &'static str {
        match self.budget {
            None => "(no budget)",
            Some(_) if self.over() => "OVER BUDGET",
            Some(_) => "ok",
        }
    }

    pub(super) fn measurement(&self) -> Measurement {
        Measurement {
            measure: self.measure.clone(),
            value: self.value,
            unit: self.unit,
            budget: self.budget,
            budget_is_minimum: self.at_least,
            over_budget: self.over(),
            details: self.extra.as_object().cloned().unwrap_or_default(),
        }
    }
}

/// `cargo xtask bench --json` (docs/reports/bench.md).
#[derive(Debug, serde::Serialize)]
pub(crate) struct BenchReport {
    /// Version of this layout: 1.
    pub schema: u32,
    /// Every measurement made, in the order made.
    pub measurements: Vec<Measurement>,
    /// How many measurements are over their budget.
    pub over_budget: usize,
    /// The measurements that could not be made, each with its cause.
    pub errors: Vec<String>,
}

/// One measurement against its budget.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Measurement {
    /// What was measured, in words.
    pub measure: String,
    /// The value.
    pub value: f64,
    /// Its unit (`s`, `bytes`, `instructions`, `calls/s`).
    pub unit: &'static str,
    /// The budget, in the same unit; `null` when there is none.
    pub budget: Option<f64>,
    /// The budget is a floor (calls per second), not a ceiling.
    pub budget_is_minimum: bool,
    /// The value is over (or, for a floor, under) its budget.
    pub over_budget: bool,
    /// What kind of measurement (`clean_build_seconds`, `image_bytes`, ...) and its details.
    #[serde(flatten)]
    pub details: serde_json::Map<String, Value>,
}

/// The table.
pub(super) fn render(rows: &[Row]) -> String {
    let budget = |r: &Row| match r.budget {
        // Budgets are whole numbers in their units.
        Some(b) => format!(
            "{}{b} {}",
            if r.at_least { ">= " } else { "" },
            r.unit.split(' ').next().unwrap_or_default()
        ),
        None => "-".to_owned(),
    };
    let shown = |r: &Row| {
        r.shown
            .clone()
            .unwrap_or_else(|| format!("{} {}", r.value, r.unit))
    };
    let w0 = rows
        .iter()
        .map(|r| r.measure.chars().count())
        .chain([7])
        .max()
        .unwrap_or(7);
    let w1 = rows
        .iter()
        .map(|r| shown(r).chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    let w2 = rows
        .iter()
        .map(|r| budget(r).chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:w0$}  {:w1$}  {:w2$}  verdict",
        "measure", "value", "budget"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:w0$}  {:w1$}  {:w2$}  {}",
            r.measure,
            shown(r),
            budget(r),
            r.verdict()
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "    {note}");
        }
    }
    let over = rows.iter().filter(|r| r.over()).count();
    let _ = writeln!(
        out,
        "bench: {} measurement(s), {over} OVER BUDGET",
        rows.len()
    );
    out
}
