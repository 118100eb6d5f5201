//! Writes three memories into a running Akosha cluster through the client library and finds
//! them again.
//!
//!     scripts/cluster.sh up                      # or any node started with --listen
//!     AKOSHA_COOKIE=... cargo run --example client [-- 127.0.0.1:7691]

use akosha::client::{Client, ClientConfig, IngestBatch, Record, SearchRequest};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let node = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("AKOSHA_NODE").ok())
        .unwrap_or_else(|| "127.0.0.1:7691".to_string());
    let cookie = std::env::var("AKOSHA_COOKIE").map_err(|_| "set AKOSHA_COOKIE")?;
    let client = Client::connect(ClientConfig::new(&[node.as_str()], &cookie)).await?;

    let texts = [
        "the integration tests flaked because the S3 server started too late",
        "we moved the embedding model download into scripts/fetch-model.sh",
        "cold files are Parquet with zstd pages, one per shard and month",
    ];
    let conversations = texts
        .iter()
        .enumerate()
        .map(|(i, text)| Record {
            id: format!("example-{i}"),
            content: text.to_string(),
            ..Record::default()
        })
        .collect();
    let batch = IngestBatch {
        system_id: "client-example".to_string(),
        conversations,
    };
    let written = client.ingest(&batch).await?;
    println!("ingested through {}: {written:?}", client.member().await);

    let request = SearchRequest::text("why did the tests flake?")
        .system("client-example")
        .limit(3);
    let answer = client.search(&request).await?;
    for hit in &answer.results {
        println!(
            "{:.3}  {}  {}",
            hit.similarity, hit.conversation_id, hit.content
        );
    }
    let stats = client.stats().await?;
    println!("the cluster holds {} records", stats.records.total);
    client.close();
    Ok(())
}
