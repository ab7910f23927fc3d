//! Embedding a pool in a Rust program.
//!
//! ```sh
//! cargo run -p claude-pool --example embed -- "write a haiku about rust" "name three crabs"
//! ```
//!
//! Runs each argument as a task on a pool of two warm Claude processes, streams progress,
//! prints each answer with its cost, then shuts the pool down. The CLI is `claude` on PATH,
//! or `$CLAUDE_POOL_CLAUDE_BIN`.

use std::time::Duration;

use claude_pool::protocol::TaskStatus;
use claude_pool::{Pool, TaskProgress, TaskSpec};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let prompts: Vec<String> = std::env::args().skip(1).collect();
    let prompts = if prompts.is_empty() {
        vec!["say hello".to_owned()]
    } else {
        prompts
    };
    let claude = std::env::var("CLAUDE_POOL_CLAUDE_BIN").unwrap_or_else(|_| "claude".into());

    let pool = Pool::builder()
        .slots(2)
        .claude_bin(claude)
        .default_timeout(Duration::from_secs(300))
        .build()
        .await?;

    // Submit everything at once: the pool runs two at a time and queues the rest.
    let (tx, mut progress) = mpsc::unbounded_channel();
    let mut ids = Vec::new();
    for prompt in &prompts {
        ids.push(
            pool.submit(TaskSpec::new(prompt.clone()).progress(tx.clone()))
                .await?,
        );
    }
    drop(tx);
    tokio::spawn(async move {
        while let Some(p) = progress.recv().await {
            if let TaskProgress::Started { slot } = p {
                eprintln!("… a task started on {slot}");
            }
        }
    });

    for (prompt, id) in prompts.iter().zip(&ids) {
        let report = pool.wait(id).await?;
        match report.status {
            TaskStatus::Completed => println!(
                "{prompt:?} → {} (${:.4}, {} in / {} out tokens)",
                report.output.unwrap_or_default(),
                report.spend_usd,
                report.tokens_used.input,
                report.tokens_used.output
            ),
            status => println!(
                "{prompt:?} → {status}: {}",
                report.error.unwrap_or_default()
            ),
        }
    }
    let status = pool.status().await?;
    println!(
        "total spend ${:.4} over {} tasks",
        status.spend_usd, status.tasks.total
    );
    pool.shutdown().await;
    Ok(())
}
