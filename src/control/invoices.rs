//! Invoices (docs/admin-api.md "Invoices"): a calendar month's usage per `invoice_to`, line
//! items per group and model, with the group's `markup_pct`.
//!
//! The amounts come from the same ledger rollups as the spend routes, summed in integer
//! micro-dollars: a line's `cost_usd` is the spend route's cost for that group and model
//! over the same month, to the micro-dollar. The markup is computed per line and rounded
//! half up to the micro-dollar; an invoice's subtotal, markup and total are the sums of
//! its lines (never a rounding of their sum). A scoped token sees the lines of its groups
//! only, and the invoices that have such lines.

use super::view::{pct, usd};
use super::{Actor, ApiError, ApiResult, Spend};
use crate::storage::ledger::{Dim, Level, UsageTotals};
use serde::Serialize;
use std::collections::BTreeMap;

const HOUR_MS: u64 = 3_600_000;

/// `?period=YYYY-MM&format=json|csv` of `GET /v1/invoices`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvoiceQuery {
    /// A calendar month in UTC; absent: the current one.
    pub(crate) period: Option<String>,
    pub(crate) format: Option<String>,
}

impl InvoiceQuery {
    /// `?format=csv` (or `json`, the default); anything else is a 400.
    pub(crate) fn csv(&self) -> ApiResult<bool> {
        match self.format.as_deref() {
            None | Some("json") => Ok(false),
            Some("csv") => Ok(true),
            Some(_) => Err(ApiError::bad_request("format", "format: json or csv")),
        }
    }
}

/// `GET /v1/invoices` (`InvoiceList`): the period's invoices, by `invoice_to`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InvoiceList {
    /// `YYYY-MM`.
    pub(crate) period: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) data: Vec<Invoice>,
}

/// One invoice (`Invoice`): the lines of every group billed to `invoice_to`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Invoice {
    pub(crate) invoice_to: String,
    /// The groups with lines on this invoice, in id order.
    pub(crate) groups: Vec<String>,
    /// The sum of the lines' `cost_usd`.
    pub(crate) subtotal_usd: f64,
    /// The sum of the lines' `markup_usd`.
    pub(crate) markup_usd: f64,
    /// The sum of the lines' `total_usd`.
    pub(crate) total_usd: f64,
    pub(crate) lines: Vec<InvoiceLine>,
}

/// One line (`InvoiceLine`): a group's usage of one model in the period.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct InvoiceLine {
    pub(crate) group: String,
    pub(crate) model: String,
    pub(crate) requests: u64,
    pub(crate) input_tokens: u64,
    pub(crate) cached_input_tokens: u64,
    pub(crate) cache_write_tokens: u64,
    pub(crate) output_tokens: u64,
    pub(crate) reasoning_tokens: u64,
    pub(crate) cost_usd: f64,
    pub(crate) markup_pct: f64,
    pub(crate) markup_usd: f64,
    pub(crate) total_usd: f64,
}

/// The markup on `cost_micros` at `millipct` thousandths of a per cent, rounded half up to
/// the micro-dollar.
pub(crate) fn markup_micros(cost_micros: u64, millipct: u32) -> u64 {
    let num = u128::from(cost_micros) * u128::from(millipct);
    ((num + 50_000) / 100_000).min(u128::from(u64::MAX)) as u64
}

/// `YYYY-MM` → the month's `[start, end)` in milliseconds since the epoch, UTC.
pub(crate) fn month_range(period: &str) -> Result<(u64, u64), String> {
    let bad = || format!("{period:?}: want a month as YYYY-MM (UTC), e.g. 2026-11");
    let b = period.as_bytes();
    if b.len() != 7
        || b[4] != b'-'
        || !b
            .iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
    {
        return Err(bad());
    }
    let year: i32 = period[..4].parse().map_err(|_| bad())?;
    let month: u8 = period[5..].parse().map_err(|_| bad())?;
    if year < 1970 {
        return Err(bad());
    }
    let start = month_start(year, month).ok_or_else(bad)?;
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let end = month_start(ny, nm).ok_or_else(bad)?;
    Ok((start, end))
}

fn month_start(year: i32, month: u8) -> Option<u64> {
    let m = time::Month::try_from(month).ok()?;
    let d = time::Date::from_calendar_date(year, m, 1).ok()?;
    u64::try_from(d.midnight().assume_utc().unix_timestamp())
        .ok()
        .map(|s| s * 1000)
}

/// The month containing `now_ms`, as `YYYY-MM`.
fn current_period(now_ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((now_ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!("{:04}-{:02}", t.year(), t.month() as u8)
}

/// A line's amounts in micro-dollars.
fn line(group: &str, model: String, t: &UsageTotals, millipct: u32) -> (InvoiceLine, [u64; 3]) {
    let markup = markup_micros(t.cost_micros, millipct);
    let total = t.cost_micros.saturating_add(markup);
    (
        InvoiceLine {
            group: group.to_string(),
            model,
            requests: t.requests,
            input_tokens: t.input_tokens,
            cached_input_tokens: t.cached_input_tokens,
            cache_write_tokens: t.cache_write_tokens,
            output_tokens: t.output_tokens,
            reasoning_tokens: t.reasoning_tokens,
            cost_usd: usd(t.cost_micros),
            markup_pct: pct(millipct),
            markup_usd: usd(markup),
            total_usd: usd(total),
        },
        [t.cost_micros, markup, total],
    )
}

impl Spend<'_> {
    /// `GET /v1/invoices?period=YYYY-MM`: one invoice per `invoice_to` (a group without one
    /// is its own, named by its id; a group no longer in the policy file likewise, with no
    /// markup), each with the lines of the groups the token sees.
    pub(crate) fn invoices(&self, actor: &Actor, q: &InvoiceQuery) -> ApiResult<InvoiceList> {
        let period = match &q.period {
            Some(p) => p.clone(),
            None => current_period(self.w.now_ms()),
        };
        let (from_ms, to_ms) =
            month_range(&period).map_err(|m| ApiError::bad_request("period", m))?;
        let (from_h, to_h) = (from_ms / HOUR_MS, to_ms / HOUR_MS);
        let snapshot = self.w.policy.load_full();
        let groups = self
            .w
            .ledger
            .as_ref()
            .map_or_else(Vec::new, |l| l.usage_groups());
        // invoice_to -> (lines, [cost, markup, total] micro-dollars)
        let mut invoices: BTreeMap<String, (Vec<InvoiceLine>, [u64; 3])> = BTreeMap::new();
        for group in groups.iter().filter(|g| actor.sees_group(g)) {
            let mut per_model: BTreeMap<String, UsageTotals> = BTreeMap::new();
            if let Some(ledger) = &self.w.ledger {
                ledger.rollup_scan(
                    Dim::Model,
                    group,
                    from_h,
                    to_h,
                    Level::Month,
                    &mut |_, model, t| match per_model.get_mut(model) {
                        Some(s) => s.add(t),
                        None => per_model.entry(model.to_string()).or_default().add(t),
                    },
                );
            }
            per_model.retain(|_, t| *t != UsageTotals::default());
            if per_model.is_empty() {
                continue;
            }
            let def = snapshot.groups.get(group.as_str());
            let to = def
                .and_then(|g| g.invoice_to.as_deref())
                .unwrap_or(group)
                .to_string();
            let millipct = def.map_or(0, |g| g.markup_millipct);
            let (lines, sums) = invoices.entry(to).or_default();
            for (model, t) in per_model {
                let (l, amounts) = line(group, model, &t, millipct);
                for (s, a) in sums.iter_mut().zip(amounts) {
                    *s = s.saturating_add(a);
                }
                lines.push(l);
            }
        }
        let data = invoices
            .into_iter()
            .map(|(invoice_to, (lines, [cost, markup, total]))| {
                let mut groups: Vec<String> = lines.iter().map(|l| l.group.clone()).collect();
                groups.dedup();
                Invoice {
                    invoice_to,
                    groups,
                    subtotal_usd: usd(cost),
                    markup_usd: usd(markup),
                    total_usd: usd(total),
                    lines,
                }
            })
            .collect();
        Ok(InvoiceList {
            period,
            from: crate::clock::rfc3339(from_ms / 1000),
            to: crate::clock::rfc3339(to_ms / 1000),
            data,
        })
    }
}

/// The CSV columns: one row per line item, its invoice first.
pub(crate) const CSV_HEADER: &str = "invoice_to,group,model,requests,input_tokens,cached_input_tokens,cache_write_tokens,output_tokens,reasoning_tokens,cost_usd,markup_pct,markup_usd,total_usd";

/// Micro-dollars as a decimal with six places (`1234567` → `1.234567`).
fn dollars(usd: f64) -> String {
    let micros = (usd * 1e6).round() as u64;
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

fn cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// An invoice list as CSV: the header, then a row per line item, invoices in order. An
/// invoice's totals are the sums of its rows. Money with six decimals.
pub(crate) fn to_csv(list: &InvoiceList) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for inv in &list.data {
        for l in &inv.lines {
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                cell(&inv.invoice_to),
                cell(&l.group),
                cell(&l.model),
                l.requests,
                l.input_tokens,
                l.cached_input_tokens,
                l.cache_write_tokens,
                l.output_tokens,
                l.reasoning_tokens,
                dollars(l.cost_usd),
                l.markup_pct,
                dollars(l.markup_usd),
                dollars(l.total_usd),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_rounds_half_up_per_line() {
        // 10 %: 1.5 micro-dollars of markup → 2; 1.4 → 1.
        assert_eq!(markup_micros(15, 10_000), 2);
        assert_eq!(markup_micros(14, 10_000), 1);
        assert_eq!(markup_micros(1_000_000, 15_000), 150_000);
        // 12.5 % of 0.000004 is 0.0000005: half up.
        assert_eq!(markup_micros(4, 12_500), 1);
        assert_eq!(markup_micros(3, 12_500), 0);
        assert_eq!(markup_micros(0, 1_000_000), 0);
        assert_eq!(markup_micros(123_456_789, 0), 0);
        // 1000 % of the largest cost does not overflow.
        assert_eq!(markup_micros(u64::MAX, 1_000_000), u64::MAX);
        assert_eq!(pct(12_500), 12.5);
    }

    /// The invoice total is the sum of the lines, each rounded, not the rounded sum.
    #[test]
    fn invoice_totals_are_sums_of_lines() {
        let t = |cost| UsageTotals {
            requests: 1,
            cost_micros: cost,
            ..Default::default()
        };
        let a = line("g", "m1".into(), &t(15), 10_000).1;
        let b = line("g", "m2".into(), &t(15), 10_000).1;
        assert_eq!((a, b), ([15, 2, 17], [15, 2, 17]));
        // The rounded 10 % of the sum (30) would be 3, the lines say 4.
        assert_eq!(a[1] + b[1], 4);
    }

    #[test]
    fn periods_are_utc_months() {
        assert_eq!(
            month_range("2026-11"),
            Ok((1_793_491_200_000, 1_796_083_200_000))
        );
        // December ends at the next year's start; February of a leap year has 29 days.
        assert_eq!(month_range("2026-12").map(|r| r.1), Ok(1_798_761_600_000));
        let (a, b) = month_range("2024-02").unwrap();
        assert_eq!((b - a) / 86_400_000, 29);
        for bad in [
            "",
            "2026",
            "2026-1",
            "2026-13",
            "2026-00",
            "26-11",
            "2026/11",
            "2026-11-01",
            "２０２６-11",
            "+026-11",
            "1969-12",
            "abcd-ef",
            "2026-1x",
        ] {
            assert!(month_range(bad).is_err(), "{bad:?}");
        }
        assert_eq!(current_period(1_793_491_200_000), "2026-11");
        assert_eq!(current_period(1_793_491_199_999), "2026-10");
    }

    #[test]
    fn csv_quotes_and_six_decimals() {
        let (l, _) = line(
            "g",
            "m".into(),
            &UsageTotals {
                requests: 2,
                input_tokens: 10,
                cached_input_tokens: 4,
                output_tokens: 5,
                cost_micros: 1_234_567,
                ..UsageTotals::default()
            },
            10_000,
        );
        let list = InvoiceList {
            period: "2026-11".into(),
            from: "a".into(),
            to: "b".into(),
            data: vec![Invoice {
                invoice_to: "acme, \"inc\"".into(),
                groups: vec!["g".into()],
                subtotal_usd: l.cost_usd,
                markup_usd: l.markup_usd,
                total_usd: l.total_usd,
                lines: vec![l],
            }],
        };
        assert_eq!(
            to_csv(&list),
            format!(
                "{CSV_HEADER}\n\"acme, \"\"inc\"\"\",g,m,2,10,4,0,5,0,1.234567,10,0.123457,1.358024\n"
            )
        );
    }
}
