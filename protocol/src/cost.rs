//! What one turn cost.
//!
//! The CLI's `total_cost_usd` is cumulative per session: it grows across the turns of one
//! persistent process and resets on `/clear` and in a new process. Summing it across turns
//! double-counts. A turn's own cost is the sum of `model_usage_since_last_result[*].costUSD`
//! when the CLI printed it, else the growth of `total_cost_usd` since the previous result of
//! the same session.

use crate::stream::{ResultEvent, Usage};

/// Dollars and tokens attributed to one turn.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct TurnCost {
    /// Dollars.
    pub usd: f64,
    /// Tokens.
    pub usage: Usage,
}

/// The cost of the turn that ended with `result`, given the session's cumulative total as of
/// the previous result in the same session (`0.0` right after a spawn or a `/clear`).
pub fn turn_cost(result: &ResultEvent, previous_session_total: f64) -> TurnCost {
    let usd = match &result.since_last {
        Some(models) if !models.is_empty() => models.iter().map(|m| m.cost_usd).sum(),
        _ => (result.total_cost_usd - previous_session_total).max(0.0),
    };
    TurnCost {
        usd,
        usage: result.turn_usage(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::ModelTurnUsage;

    fn result(total: f64, since: Option<Vec<(f64, u64, u64)>>) -> ResultEvent {
        ResultEvent {
            total_cost_usd: total,
            usage: Usage {
                input_tokens: 7,
                output_tokens: 3,
                ..Usage::default()
            },
            since_last: since.map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (cost, inp, out))| ModelTurnUsage {
                        model: format!("m{i}"),
                        usage: Usage {
                            input_tokens: inp,
                            output_tokens: out,
                            ..Usage::default()
                        },
                        cost_usd: cost,
                    })
                    .collect()
            }),
            ..ResultEvent::default()
        }
    }

    #[test]
    fn a_turn_costs_its_own_usage_never_the_cumulative_total() {
        // (result, previous session total) -> (usd, input, output)
        let cases = [
            // first turn of a session, per-model breakdown present
            (
                result(0.10, Some(vec![(0.10, 100, 10)])),
                0.0,
                (0.10, 100, 10),
            ),
            // third turn of a session: the total is cumulative, the breakdown is not
            (
                result(0.30, Some(vec![(0.10, 100, 10)])),
                0.20,
                (0.10, 100, 10),
            ),
            // two models in one turn (fallback): costs and tokens add up
            (
                result(0.5, Some(vec![(0.2, 10, 1), (0.3, 20, 2)])),
                0.0,
                (0.5, 30, 3),
            ),
            // no breakdown printed: the difference of consecutive totals, usage from `usage`
            (result(0.30, None), 0.20, (0.10, 7, 3)),
            // a total that went down (new session) never yields a negative cost
            (result(0.05, None), 0.20, (0.0, 7, 3)),
            // an empty breakdown falls back to the difference too
            (result(0.4, Some(vec![])), 0.1, (0.3, 7, 3)),
        ];
        for (i, (r, prev, (usd, inp, out))) in cases.into_iter().enumerate() {
            let c = turn_cost(&r, prev);
            assert!(
                (c.usd - usd).abs() < 1e-12,
                "case {i}: usd {} != {usd}",
                c.usd
            );
            assert_eq!(
                (c.usage.input_tokens, c.usage.output_tokens),
                (inp, out),
                "case {i}"
            );
        }
    }
}
