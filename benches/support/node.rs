//! What the scale benches share: a node running `SIM<i>USDT` books against a simulator, and a
//! census of its books.

use ubdcc_engine::{BookSpec, Exchange, Node, NodeConfig, NodeHandle};
use ubdcc_shm::BookStatus;

/// Starts a node with `config` on the current runtime and adds `books` books `SIM0USDT`… of
/// `exchange`; returns its handle.
pub async fn start_with_books(
    config: NodeConfig,
    exchange: Exchange,
    books: usize,
) -> anyhow::Result<NodeHandle> {
    let (node, handle, commands) = Node::start(config)?;
    tokio::spawn(async move {
        if let Err(error) = node.run(commands, std::future::pending()).await {
            eprintln!("the node stopped: {error}");
        }
    });
    for i in 0..books {
        handle
            .add(BookSpec {
                exchange,
                symbol: format!("SIM{i}USDT"),
                update_interval_ms: None,
                refresh_interval: None,
                record: false,
            })
            .await?;
    }
    Ok(handle)
}

/// Books synced now, and resyncs counted over all books.
pub async fn census(handle: &NodeHandle) -> anyhow::Result<(usize, u64)> {
    let reports = handle.list().await?;
    let synced = reports
        .iter()
        .filter(|report| report.meta.status == BookStatus::Synced)
        .count();
    let resyncs = reports
        .iter()
        .map(|report| u64::from(report.meta.resyncs))
        .sum();
    Ok((synced, resyncs))
}
