//! Reads answered from the pool alone: `pool_status` and `pool_result` without a wait. They
//! need nothing of the session that asks (no peer to notify, no elicitation, no progress),
//! so the HTTP front-end can answer them without the session's handler — the same answer
//! the handler gives, built by the same functions (`crate::http` documents the lane).

use claude_pool_protocol::tools::{ResultParams, StatusParams};
use rmcp::ErrorData;
use rmcp::model::{CallToolResult, JsonObject};

use super::{answer, arguments_as_result, fail, structured};
use crate::pool::Pool;

/// The tools whose calls may be answered here.
pub(crate) const TOOLS: [&str; 2] = ["pool_status", "pool_result"];

/// The answer to calling `name` with `arguments`, or `None` when the call is not one of
/// these reads (another tool, a tool this server does not serve, a wait, arguments that do
/// not parse): such a call goes to the session's handler, which says what is wrong.
pub(crate) async fn call(
    pool: &Pool,
    name: &str,
    arguments: JsonObject,
) -> Option<Result<CallToolResult, ErrorData>> {
    if !pool.config().tools.serves(name) {
        return None;
    }
    let arguments = serde_json::Value::Object(arguments);
    let answer = match name {
        "pool_status" => {
            let params: StatusParams = serde_json::from_value(arguments).ok()?;
            if params.wait_ready.is_some() {
                return None;
            }
            answer(pool.status().await)
        }
        "pool_result" => {
            let params: ResultParams = serde_json::from_value(arguments).ok()?;
            if params.wait.is_some() {
                return None;
            }
            match pool.result(&params.task_id).await {
                Ok(r) => structured(&r),
                Err(e) => fail(e),
            }
        }
        _ => return None,
    };
    tracing::debug!(tool = %name, ok = answer.is_ok(), "call, answered from the pool");
    Some(arguments_as_result(true, answer))
}
