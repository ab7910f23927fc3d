//! The Claude CLI's price table, for following spend while a turn runs.
//!
//! A turn's exact cost comes from its `result` ([`crate::cost`]). While the turn runs, each
//! API call shows up as an `assistant` event whose usage carries the call's final input and
//! cache token counts (its output count is only the start-of-stream figure): pricing those
//! tells the budget ledger what the call has already cost the moment it starts. The table is
//! the one the CLI 2.1.329 applies (dollars per million tokens: input, output, cache read,
//! cache write); a model it does not list is priced like the CLI's default model.

use crate::stream::Usage;

/// Dollars per million tokens: input, output, cache read, cache write.
pub type Rates = [f64; 4];

/// The CLI's default model, whose prices also apply to models the table does not list.
pub const DEFAULT_MODEL: &str = "claude-opus-5-5";

const DEFAULT_RATES: Rates = [4.0, 20.0, 0.2, 5.0];

/// The full model id an alias stands for (`opus`, `sonnet`, `haiku`), or the id itself.
pub fn resolve_alias(model: &str) -> &str {
    match model {
        "" | "opus" => DEFAULT_MODEL,
        "sonnet" => "claude-sonnet-5-5",
        "haiku" => "claude-haiku-5-5",
        other => other,
    }
}

/// `model` without a trailing `-YYYYMMDD` date.
fn strip_date(model: &str) -> &str {
    let b = model.as_bytes();
    let dated =
        b.len() >= 9 && b[b.len() - 9] == b'-' && b[b.len() - 8..].iter().all(u8::is_ascii_digit);
    if dated {
        &model[..model.len() - 9]
    } else {
        model
    }
}

/// The rates of `model` (an id or an alias), and whether the table lists it.
pub fn rates(model: &str) -> (Rates, bool) {
    let m = strip_date(resolve_alias(model));
    let listed = match m {
        "claude-opus-5-5" => Some([4.0, 20.0, 0.2, 5.0]),
        "claude-sonnet-5-5" => Some([2.0, 10.0, 0.1, 2.5]),
        "claude-haiku-5-5" => Some([0.5, 2.5, 0.05, 0.625]),
        "claude-fable-5-2" => Some([8.0, 40.0, 0.2, 10.0]),
        "claude-opus-4-5" => Some([5.0, 25.0, 0.5, 6.25]),
        "claude-sonnet-4-5" | "claude-sonnet-4" | "claude-sonnet-4-0" => {
            Some([3.0, 15.0, 0.3, 3.75])
        }
        "claude-haiku-4-5" => Some([1.0, 5.0, 0.1, 1.25]),
        "claude-3-5-haiku" => Some([0.8, 4.0, 0.08, 1.0]),
        _ => None,
    };
    match listed {
        Some(r) => (r, true),
        None => (DEFAULT_RATES, false),
    }
}

/// Dollars of one API call with `usage` on `model`, as the CLI prices it (haiku 5.5 is
/// cheaper up to 100k input tokens).
pub fn call_cost_usd(model: &str, usage: &Usage) -> f64 {
    let (mut r, _) = rates(model);
    let input_side =
        usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens;
    if strip_date(resolve_alias(model)) == "claude-haiku-5-5" && input_side <= 100_000 {
        r = [0.1, 0.5, 0.01, 0.125];
    }
    let c = usage.input_tokens as f64 * r[0]
        + usage.output_tokens as f64 * r[1]
        + usage.cache_read_input_tokens as f64 * r[2]
        + usage.cache_creation_input_tokens as f64 * r[3];
    c / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(i: u64, o: u64, cr: u64, cw: u64) -> Usage {
        Usage {
            input_tokens: i,
            output_tokens: o,
            cache_read_input_tokens: cr,
            cache_creation_input_tokens: cw,
        }
    }

    #[test]
    fn calls_are_priced_like_the_cli() {
        // (model, usage, dollars computed by hand from the per-million rates)
        let cases = [
            (
                "claude-sonnet-5-5",
                u(1000, 200, 0, 0),
                (1000.0 * 2.0 + 200.0 * 10.0) / 1e6,
            ),
            ("sonnet", u(1000, 1, 0, 0), (1000.0 * 2.0 + 10.0) / 1e6),
            (
                "opus",
                u(0, 0, 1000, 1000),
                (1000.0 * 0.2 + 1000.0 * 5.0) / 1e6,
            ),
            (
                "claude-haiku-5-5",
                u(1000, 100, 0, 0),
                (1000.0 * 0.1 + 100.0 * 0.5) / 1e6,
            ),
            (
                "claude-haiku-5-5",
                u(200_000, 0, 0, 0),
                200_000.0 * 0.5 / 1e6,
            ),
            (
                "claude-sonnet-4-20250514",
                u(1000, 0, 0, 0),
                1000.0 * 3.0 / 1e6,
            ),
            ("some-future-model", u(1000, 0, 0, 0), 1000.0 * 4.0 / 1e6),
        ];
        for (model, usage, want) in cases {
            let got = call_cost_usd(model, &usage);
            assert!((got - want).abs() < 1e-15, "{model}: {got} != {want}");
        }
        assert!(!rates("some-future-model").1);
    }
}
